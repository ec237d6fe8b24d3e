"""The tamper-evident audit stream: hash-chained entries in one Redis stream, and its verifier."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

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
#: Entries fetched per XRANGE while reading or verifying.
SCAN_BATCH = 1000
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


class AuditVerdict(BaseModel):
    """The outcome of `AuditLog.verify`: ok, or the first problem found and where."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    entries: int
    head: str
    problem: str | None = None
    entry_id: str | None = None


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


class AuditLog:
    """Appends to, reads and verifies the audit stream under one key prefix."""

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

    def read(
        self,
        *,
        session: str | None = None,
        device: str | None = None,
        actor: str | None = None,
        command: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, oldest first; `limit` keeps the newest ones.

        `since` and `until` bound `ts` inclusively; `command` matches details["command_id"].
        """

        def matches(e: AuditEntry) -> bool:
            return (
                (session is None or e.details.get("session") == session)
                and (device is None or e.details.get("device") == device)
                and (actor is None or e.actor == actor)
                and (command is None or e.details.get("command_id") == command)
                and (since is None or e.ts >= since)
                and (until is None or e.ts <= until)
            )

        if limit is not None and limit <= 0:
            return []
        found: list[AuditEntry] = []
        # Newest first, so a limit stops the scan early; reversed below to read oldest first.
        for entry_id, fields in self._scan(reverse=True):
            entry = _parse_entry(entry_id, fields)
            if entry is not None and matches(entry):
                found.append(entry)
                if limit is not None and len(found) >= limit:
                    break
        found.reverse()
        return found

    def verify(self) -> AuditVerdict:
        """Recompute the chain in stream order; report the first edit, deletion or reordering."""
        stored_head = as_text(self.client.get(self.keys.audit_head))
        expected_prev = GENESIS
        count = 0
        last_id: str | None = None

        def fail(problem: str, entry_id: str | None) -> AuditVerdict:
            return AuditVerdict(
                ok=False, entries=count, head=stored_head or "", problem=problem, entry_id=entry_id
            )

        for entry_id, fields in self._scan(reverse=False):
            count += 1
            problem = _check_entry(entry_id, fields, expected_prev, first=(last_id is None))
            if problem:
                return fail(problem, entry_id)
            expected_prev = fields["hash"]
            last_id = entry_id
        if last_id is None:
            if stored_head and stored_head != GENESIS:
                return fail(
                    f"stream is empty but the head is {stored_head[:16]}…: every entry was deleted",
                    None,
                )
            return AuditVerdict(ok=True, entries=0, head=stored_head or GENESIS)
        if not stored_head:
            return fail("head key is missing (deleted)", last_id)
        if stored_head != expected_prev:
            return fail(
                f"entry {last_id}: the newest entry's hash does not match the head "
                "(newest entries deleted, or the head replaced)",
                last_id,
            )
        return AuditVerdict(ok=True, entries=count, head=stored_head)

    def _scan(self, *, reverse: bool) -> Iterator[tuple[str, dict[str, str]]]:
        """Every stream entry as (id, decoded fields), in batches."""
        cursor = "+" if reverse else "-"
        while True:
            if reverse:
                reply = self.client.xrevrange(
                    self.keys.audit, max=cursor, min="-", count=SCAN_BATCH
                )
            else:
                reply = self.client.xrange(self.keys.audit, min=cursor, max="+", count=SCAN_BATCH)
            batch = cast(list[tuple[bytes, dict[bytes, bytes]]], reply or [])
            for raw_id, raw_fields in batch:
                yield as_text(raw_id), {as_text(k): as_text(v) for k, v in raw_fields.items()}
            if len(batch) < SCAN_BATCH:
                return
            # Exclusive ranges ("(" prefix) continue after the last id seen.
            cursor = "(" + as_text(batch[-1][0])


def _check_entry(
    entry_id: str, fields: dict[str, str], expected_prev: str, *, first: bool
) -> str | None:
    """The problem with one stored entry given the hash before it, or None when it is sound."""
    missing = [name for name in ENTRY_FIELDS if name not in fields]
    extra = sorted(set(fields) - set(ENTRY_FIELDS))
    if missing or extra:
        return f"entry {entry_id}: fields missing {missing} or unexpected {extra} (altered)"
    try:
        ts = float(fields["ts"])
        details = json.loads(fields["details"])
        canonical = (
            repr(ts) == fields["ts"]
            and isinstance(details, dict)
            and to_canonical_json(details) == fields["details"]
        )
    except ValueError:
        canonical = False
    if not canonical:
        return f"entry {entry_id}: ts or details are not in canonical form (altered)"
    body = {
        **{name: fields[name] for name in ENTRY_FIELDS if name != "hash"},
        "ts": ts,
        "details": details,
    }
    if compute_hash(fields["prev"], body) != fields["hash"]:
        return f"entry {entry_id}: hash does not match its content (altered)"
    if fields["prev"] != expected_prev:
        if first:
            return (
                f"entry {entry_id}: prev mismatch: the oldest entry does not start the "
                "chain (entries before it deleted)"
            )
        return (
            f"entry {entry_id}: prev mismatch: prev is not the hash of the entry before "
            "it (an entry deleted or reordered)"
        )
    return None


def _parse_entry(entry_id: str, fields: dict[str, str]) -> AuditEntry | None:
    """A stored entry as a model; None when it is too damaged to read (verify reports it)."""
    try:
        details = json.loads(fields["details"])
        body: dict[str, Any] = {name: fields[name] for name in ENTRY_FIELDS}
        body.update(ts=float(fields["ts"]), details=details if isinstance(details, dict) else {})
        return AuditEntry(id=entry_id, **body)
    except (KeyError, ValueError):
        return None
