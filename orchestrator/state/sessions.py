"""Live-response sessions in Redis: open, touch, expire by idle time or maximum length, close."""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from config.settings import Settings
from orchestrator.state.reads import Reader
from tasks import clock
from tasks.errors import (
    PermissionDeniedError,
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
    UsageError,
)
from tasks.keys import Keys
from tasks.queues import validate_device_id
from tasks.replies import as_text
from tasks.scripts import queue_script

#: What a session id looks like ("S" and 8 hex digits); anything else is simply unknown.
SESSION_ID_RE = re.compile(r"S[0-9a-f]{8}")
#: How long a session's hash outlives its maximum length, so a late look-up says "expired".
SESSION_KEY_GRACE_S = 24 * 60 * 60
#: close_reason of a session that passed its idle timeout.
REASON_IDLE = "idle-timeout"
#: close_reason of a session that passed its maximum length.
REASON_MAX_LENGTH = "max-length"
#: Where a session starts on the device when its opener names no directory: the root, never
#: wherever the agent process happens to run.
DEFAULT_CWD = "/"
#: Longest start directory a session takes.
MAX_CWD_CHARS = 4096
#: An absolute path on the endpoint: POSIX `/...`, or Windows `C:\...` / `C:/...`.
ABSOLUTE_PATH_RE = re.compile(r"/|[A-Za-z]:[\\/]")

# KEYS[1] = new session hash; ARGV[1] = TTL seconds; ARGV[2..] = field/value pairs.
# Creates only if the id is free, so a (very unlikely) id collision never merges two sessions.
_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] = session hash; ARGV[1] = state required ('*' = any); ARGV[2] = TTL seconds (0 keeps
# it); ARGV[3..] = field/value pairs. The state test and the write are one step, so a touch
# cannot revive a session that was closed or expired a moment before.
_UPDATE_LUA = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
if ARGV[1] ~= '*' and cur ~= ARGV[1] then return {0, cur} end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {1, cur}
"""


class SessionState(StrEnum):
    """Whether a session takes commands; closed and expired are final."""

    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"


class Session(BaseModel):
    """One analyst's live-response session on one device."""

    model_config = ConfigDict(frozen=True)

    id: str
    user: str
    device_id: str
    state: SessionState
    created_at: float
    last_active: float
    closed_at: float | None = None
    cwd: str | None = None
    close_reason: str | None = None


def check_start_dir(path: str) -> str:
    """`path` if it can be a session's start directory (absolute, one line), else UsageError."""
    if (not ABSOLUTE_PATH_RE.match(path) or len(path) > MAX_CWD_CHARS
            or any(ch in path for ch in "\x00\r\n")):
        raise UsageError(f"the start directory {path[:200]!r} is not an absolute path",
                         hint="give a full path on the device, e.g. --cwd /var/log")
    return path


class SessionStore:
    """Sessions under one key prefix, with the limits from `settings`."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self.key_ttl_s = int(settings.session_max_length_s + SESSION_KEY_GRACE_S)
        self._create = client.register_script(_CREATE_LUA)
        self._update = client.register_script(_UPDATE_LUA)

    def open(self, user: str, device_id: str, cwd: str | None = None) -> Session:
        """Open a new session for `user` on `device_id`, in directory `cwd` (an absolute path
        on the device; default DEFAULT_CWD)."""
        validate_device_id(device_id)
        cwd = check_start_dir(cwd) if cwd is not None else DEFAULT_CWD
        now = float(clock.now())
        # Old ids in the index whose hashes have expired away: drop them as we go.
        self.client.zremrangebyscore(self.keys.sessions, "-inf", now - self.key_ttl_s)
        while True:
            session = Session(
                id="S" + secrets.token_hex(4),
                user=user,
                device_id=device_id,
                state=SessionState.OPEN,
                created_at=now,
                last_active=now,
                cwd=cwd,
            )
            argv: list[str | int] = [self.key_ttl_s]
            for name, value in _to_fields(session).items():
                argv += [name, value]
            if self._create(keys=[self.keys.session(session.id)], args=argv):
                break
        self.client.zadd(self.keys.sessions, {session.id: now})
        return session

    def get(self, session_id: str, reader: Reader | None = None) -> Session:
        """The session as it stands now (an open one past its limits is marked expired);
        `reader`: a request's prefetched reads (state.reads), else this store's client."""
        return self._apply_limits(self._load(session_id, reader))

    def check_usable(self, session_id: str, user: str, reader: Reader | None = None) -> Session:
        """The session if `user` may send a command in it now; else the reason, raised."""
        session = self.get(session_id, reader)
        # Ownership first, so nobody learns the state of sessions that are not theirs.
        if session.user != user:
            raise PermissionDeniedError(
                f"session {session_id} belongs to another user",
                hint="open your own session on the device",
            )
        _raise_if_unusable(session)
        return session

    def touch(self, session_id: str) -> Session:
        """Record activity now (idle time restarts, key TTL renewed); raises if not open."""
        session = self.get(session_id)
        _raise_if_unusable(session)
        now = float(clock.now())
        if not self._write(
            session_id, SessionState.OPEN, {"last_active": repr(now)}, ttl_s=self.key_ttl_s
        ):
            _raise_if_unusable(self.get(session_id))
        return session.model_copy(update={"last_active": now})

    def stage_active(self, pipe: Any, session: Session) -> Callable[[Any], None]:
        """Queue touch() of a session just checked usable on `pipe`, sent with other writes.

        Returns `finish(reply)`: give it this write's reply; it raises if the session stopped
        being open in the meantime.
        """
        argv: builtins.list[str | int] = [SessionState.OPEN.value, self.key_ttl_s,
                                          "last_active", repr(float(clock.now()))]
        queue_script(pipe, self._update, [self.keys.session(session.id)], argv)

        def finish(reply: Any) -> None:
            if not reply[0]:
                _raise_if_unusable(self.get(session.id))

        return finish

    def set_cwd(self, session_id: str, cwd: str | None) -> Session:
        """Remember the session's working directory on the device (None: the agent's default)."""
        if not self._write(session_id, "*", {"cwd": cwd or ""}):
            raise _not_found(session_id)
        return self._load(session_id)

    def close(self, session_id: str, reason: str = "closed") -> Session:
        """Close an open session; a session already closed or expired is returned unchanged."""
        session = self.get(session_id)
        if session.state is SessionState.OPEN:
            now = float(clock.now())
            self._write(
                session_id,
                SessionState.OPEN,
                {
                    "state": SessionState.CLOSED.value,
                    "closed_at": repr(now),
                    "close_reason": reason,
                },
            )
        return self._load(session_id)

    def list(self, user: str | None = None, include_closed: bool = False) -> builtins.list[Session]:
        """Sessions oldest first, of `user` if given; only open ones unless `include_closed`."""
        ids = [as_text(i) for i in self.client.zrange(self.keys.sessions, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for session_id in ids:
            pipe.hgetall(self.keys.session(session_id))
        found: builtins.list[Session] = []
        for session_id, raw in zip(ids, pipe.execute(), strict=True):
            if not raw:
                self.client.zrem(self.keys.sessions, session_id)
                continue
            session = _from_fields(raw)
            if user is not None and session.user != user:
                continue
            session = self._apply_limits(session)
            if include_closed or session.state is SessionState.OPEN:
                found.append(session)
        return found

    def _load(self, session_id: str, reader: Reader | None = None) -> Session:
        """The session exactly as stored; SessionNotFoundError if there is none."""
        if not isinstance(session_id, str) or not SESSION_ID_RE.fullmatch(session_id):
            raise _not_found(session_id)
        raw = (reader or self.client).hgetall(self.keys.session(session_id))
        if not raw:
            raise _not_found(session_id)
        return _from_fields(raw)

    def _write(
        self, session_id: str, required: SessionState | str, fields: dict[str, str], ttl_s: int = 0
    ) -> bool:
        """Set `fields` if the session is in state `required` ('*': any); True if written."""
        argv: builtins.list[str | int] = [str(required), ttl_s]
        for name, value in fields.items():
            argv += [name, value]
        done, _ = self._update(keys=[self.keys.session(session_id)], args=argv)
        return bool(done)

    def _apply_limits(self, session: Session) -> Session:
        """Mark an open session expired in Redis if it is past a limit, so it stays refused."""
        if session.state is not SessionState.OPEN:
            return session
        idle_end = session.last_active + self.settings.session_idle_timeout_s
        max_end = session.created_at + self.settings.session_max_length_s
        if float(clock.now()) <= min(idle_end, max_end):
            return session
        # Whichever limit came first is the one that ended the session.
        ended_at, reason = (
            (idle_end, REASON_IDLE) if idle_end <= max_end else (max_end, REASON_MAX_LENGTH)
        )
        self._write(
            session.id,
            SessionState.OPEN,
            {
                "state": SessionState.EXPIRED.value,
                "closed_at": repr(ended_at),
                "close_reason": reason,
            },
        )
        return self._load(session.id)


def _raise_if_unusable(session: Session) -> None:
    """Raise SessionClosedError or SessionExpiredError, saying which limit and when."""
    hint = f"open a new session on device {session.device_id}"
    ended = _format_time(session.closed_at)
    if session.state is SessionState.CLOSED:
        raise SessionClosedError(
            f"session {session.id} was closed at {ended} ({session.close_reason})", hint=hint
        )
    if session.state is SessionState.EXPIRED:
        ended_at = session.closed_at or 0.0
        if session.close_reason == REASON_MAX_LENGTH:
            limit = _format_duration(ended_at - session.created_at)
            raise SessionExpiredError(
                f"session {session.id} expired: it reached its maximum length of {limit} "
                f"(opened {_format_time(session.created_at)}, expired {ended})",
                hint=hint,
            )
        limit = _format_duration(ended_at - session.last_active)
        raise SessionExpiredError(
            f"session {session.id} expired: idle for longer than the idle timeout of {limit} "
            f"(last activity {_format_time(session.last_active)}, expired {ended})",
            hint=hint,
        )


def _not_found(session_id: object) -> SessionNotFoundError:
    return SessionNotFoundError(
        f"no session {session_id!r}", hint="list your sessions with `lr session list`"
    )


def _to_fields(session: Session) -> dict[str, str]:
    """The session as hash fields; None is stored as an empty string."""
    out: dict[str, str] = {}
    for name, value in session.model_dump().items():
        if value is None:
            out[name] = ""
        elif isinstance(value, float):
            out[name] = repr(value)
        else:
            out[name] = str(value)
    return out


def _from_fields(raw: Mapping[Any, Any]) -> Session:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return Session(
        id=fields["id"],
        user=fields["user"],
        device_id=fields["device_id"],
        state=SessionState(fields["state"]),
        created_at=float(fields["created_at"]),
        last_active=float(fields["last_active"]),
        closed_at=float(fields["closed_at"]) if fields.get("closed_at") else None,
        cwd=fields.get("cwd") or None,
        close_reason=fields.get("close_reason") or None,
    )


def _format_time(ts: float | None) -> str:
    if ts is None:
        return "an unknown time"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_duration(seconds: float) -> str:
    """30m, 4h, 1h30m, 45s: a limit as people write it."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
