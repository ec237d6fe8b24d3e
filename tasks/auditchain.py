"""The audit chain's append side: hash-chained entries added to one Redis stream.

Both the orchestrator and the agents append here (an agent records what it refused); reading
and verifying the chain is the orchestrator's (`orchestrator.audit.AuditLog`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from tasks import clock
from tasks.errors import LiveResponseError
from tasks.keys import Keys
from tasks.replies import as_text

#: `prev` of the first entry: there is nothing before it.
GENESIS = "0" * 64
#: Detail keys that would put a secret into the stream; refused at any depth.
FORBIDDEN_DETAIL_KEYS = frozenset({"token", "password", "secret"})
#: How often an append retries after another writer moved the head first.
MAX_APPEND_ATTEMPTS = 100
#: Every field a stored entry must have.
ENTRY_FIELDS = ("ts", "actor", "action", "target", "decision", "details", "prev", "hash")

# KEYS[1] = stream, KEYS[2] = head; ARGV[1] = expected prev, ARGV[2] = new hash,
# ARGV[3..] = field/value pairs of the entry. Appends only while the head is still the
# expected prev, so two writers can never both chain onto the same entry (a fork).
# Returns {1, id} on success, {0, current head} on a conflict, {-1, ''} when the head key
# is gone while entries remain (someone deleted it: appending would start a second chain).
_APPEND_LUA = """
local head = redis.call('GET', KEYS[2])
if not head then
  if redis.call('XLEN', KEYS[1]) > 0 then return {-1, ''} end
  head = string.rep('0', 64)
end
if head ~= ARGV[1] then return {0, head} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], ARGV[2])
return {1, id}
"""


class AuditEntry(BaseModel):
    """One audit record as stored: who did what to which target, the decision, and its links."""

    model_config = ConfigDict(frozen=True)

    id: str
    ts: float
    actor: str
    action: str
    target: str
    decision: str
    details: dict[str, Any]
    prev: str
    hash: str


def digest(data: bytes | str) -> str:
    """`sha256:<hex>` of `data`: what goes into the stream instead of results or secrets."""
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def to_canonical_json(value: Any) -> str:
    """Sorted, compact, ASCII-only JSON: one byte string per value, so hashes are stable."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def compute_hash(prev: str, body: Mapping[str, Any]) -> str:
    """sha256(prev ‖ canonical JSON of the entry without its hash), as hex."""
    return hashlib.sha256(prev.encode() + to_canonical_json(dict(body)).encode()).hexdigest()


def check_details(details: Mapping[str, Any]) -> str:
    """Return `details` as canonical JSON; ValueError if it holds a secret key or is not JSON."""
    _refuse_secret_keys(details, "details")
    try:
        return to_canonical_json(details)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit details must be plain JSON values: {exc}") from exc


def _refuse_secret_keys(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in FORBIDDEN_DETAIL_KEYS:
                raise ValueError(
                    f"audit {where} may not hold a key named {key!r}: "
                    "secrets never enter the audit stream (record digest(...) instead)"
                )
            _refuse_secret_keys(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _refuse_secret_keys(item, f"{where}[{i}]")


@dataclass(frozen=True)
class _Draft:
    """An entry's content before it is chained: what every append attempt hashes."""

    actor: str
    action: str
    target: str
    decision: str
    details_json: str

    def attempt(self, prev: str) -> tuple[dict[str, Any], str, list[str]]:
        """(body, hash, script argv) of this entry chained after `prev`."""
        # The time is taken per attempt so a retried entry is not stamped before its prev.
        ts = float(clock.now())
        body = {
            "ts": ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "decision": self.decision,
            "details": json.loads(self.details_json),
            "prev": prev,
        }
        entry_hash = compute_hash(prev, body)
        fields = {**body, "ts": repr(ts), "details": self.details_json, "hash": entry_hash}
        argv: list[str] = [prev, entry_hash]
        for name in ENTRY_FIELDS:
            argv += [name, str(fields[name])]
        return body, entry_hash, argv


class AuditChain:
    """Appends entries to the audit stream under one key prefix, never forking the chain."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._append = client.register_script(_APPEND_LUA)
        # Last head this process wrote or saw: a hint that saves a GET per append. The Lua
        # compare-and-append stays the authority; a stale hint only costs one retry.
        self._head_hint: str | None = None

    def append(
        self, actor: str, action: str, target: str, decision: str, **details: Any
    ) -> AuditEntry:
        """Add one entry at the head of the chain; retries if another writer got there first."""
        draft = _Draft(actor, action, target, decision, check_details(details))
        return self._commit(draft, self._head_hint or self._read_head())

    def stage(
        self, pipe: Any, actor: str, action: str, target: str, decision: str, **details: Any
    ) -> Callable[[Any], AuditEntry]:
        """Queue a first append attempt on `pipe`, sent with the caller's other writes.

        Returns `finish(reply)`: give it this attempt's reply from `pipe.execute()`; it
        returns the entry, retrying on its own if another writer moved the head meanwhile.
        """
        draft = _Draft(actor, action, target, decision, check_details(details))
        prev = self._head_hint or self._read_head()
        body, entry_hash, argv = draft.attempt(prev)
        self._append(keys=[self.keys.audit, self.keys.audit_head], args=argv, client=pipe)

        def finish(reply: Any) -> AuditEntry:
            entry = self._settle(reply, body, entry_hash)
            return entry if entry is not None else self._commit(draft, as_text(reply[1]))

        return finish

    def _read_head(self) -> str:
        return as_text(self.client.get(self.keys.audit_head)) or GENESIS

    def _commit(self, draft: _Draft, prev: str) -> AuditEntry:
        for _ in range(MAX_APPEND_ATTEMPTS):
            body, entry_hash, argv = draft.attempt(prev)
            reply = self._append(keys=[self.keys.audit, self.keys.audit_head], args=argv)
            entry = self._settle(reply, body, entry_hash)
            if entry is not None:
                return entry
            prev = as_text(reply[1])
        raise LiveResponseError(
            f"could not append to the audit stream after {MAX_APPEND_ATTEMPTS} attempts",
            hint="too many concurrent writers; retry the action",
        )

    def _settle(self, reply: Any, body: dict[str, Any], entry_hash: str) -> AuditEntry | None:
        """The entry when the script appended it, None on a head conflict; raises if no head."""
        status, value = reply
        if status == 1:
            self._head_hint = entry_hash
            return AuditEntry(id=as_text(value), **body, hash=entry_hash)
        if status == -1:
            raise LiveResponseError(
                f"audit head {self.keys.audit_head} is missing while the stream has entries",
                hint="run `lr audit verify`; the audit chain may have been tampered with",
            )
        return None
