"""The tamper-evident audit stream: reading and verifying the chain `tasks.auditchain` appends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

from pydantic import BaseModel, ConfigDict

from tasks.auditchain import (
    ENTRY_FIELDS,
    FORBIDDEN_DETAIL_KEYS,
    GENESIS,
    MAX_APPEND_ATTEMPTS,
    AuditChain,
    AuditEntry,
    check_details,
    compute_hash,
    digest,
    to_canonical_json,
)
from tasks.replies import as_text

#: Entries fetched per XRANGE while reading or verifying.
SCAN_BATCH = 1000

__all__ = [
    "ENTRY_FIELDS",
    "FORBIDDEN_DETAIL_KEYS",
    "GENESIS",
    "MAX_APPEND_ATTEMPTS",
    "SCAN_BATCH",
    "AuditChain",
    "AuditEntry",
    "AuditLog",
    "AuditVerdict",
    "check_details",
    "compute_hash",
    "digest",
    "to_canonical_json",
]


class AuditVerdict(BaseModel):
    """The outcome of `AuditLog.verify`: ok, or the first problem found and where."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    entries: int
    head: str
    problem: str | None = None
    entry_id: str | None = None


class AuditLog(AuditChain):
    """Appends to, reads and verifies the audit stream under one key prefix."""

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
