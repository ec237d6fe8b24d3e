"""The tamper-evident audit stream: reading and verifying the chain `tasks.auditchain` appends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict

from orchestrator.audit_checkpoint import checkpoint_problem, parse_checkpoint
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

if TYPE_CHECKING:
    from tasks.signing import Verifier

#: Entries fetched per XRANGE while reading or verifying.
SCAN_BATCH = 1000
#: How often `verify` starts over when a trim moved the chain's start while it read.
MAX_VERIFY_ATTEMPTS = 3

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
    "ChainSnapshot",
    "ChainWalk",
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
    #: Entries removed by trims before the first one checked (the checkpoint's count).
    trimmed: int = 0
    #: Line of an exported file where the problem is (offline verification only).
    line: int | None = None


@dataclass(frozen=True)
class ChainSnapshot:
    """The chain's head, checkpoint, newest id and length, read at one instant."""

    head: str | None
    checkpoint: str | None
    newest_id: str | None
    entries: int


class ChainWalk:
    """The one per-entry check, fed entries oldest first, starting from the hash before them."""

    def __init__(self, start: str = GENESIS) -> None:
        self.start = start
        self.expected_prev = start
        self.entries = 0
        self.last_id: str | None = None

    def step(self, entry_id: str, fields: Mapping[str, str]) -> str | None:
        """The problem with the next entry, or None (then it becomes the one to link to)."""
        self.entries += 1
        problem = _check_entry(entry_id, fields, self.expected_prev, first=self.last_id is None)
        if problem is None:
            self.expected_prev = fields["hash"]
            self.last_id = entry_id
        return problem

    def head_problem(self, head: str | None) -> str | None:
        """The problem with `head` as the newest hash, once every entry went through `step`."""
        if self.last_id is None:
            if head and head != self.start:
                return f"no entries, but the head is {head[:16]}…: every entry was deleted"
            return None
        if not head:
            return "head is missing (deleted)"
        if head != self.expected_prev:
            return (
                f"entry {self.last_id}: the newest entry's hash does not match the head "
                "(newest entries deleted, or the head replaced)"
            )
        return None


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
        visible: Callable[[AuditEntry], bool] | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, oldest first; `limit` keeps the newest ones.

        `visible`: only entries it accepts (the reader's scope) count, toward `limit` too.

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
                and (visible is None or visible(e))
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

    def snapshot(self) -> ChainSnapshot:
        """Head, checkpoint, newest entry id and length in one transaction (one instant)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.audit_head)
        pipe.get(self.keys.audit_checkpoint)
        pipe.xrevrange(self.keys.audit, max="+", min="-", count=1)
        pipe.xlen(self.keys.audit)
        head, checkpoint, newest, length = pipe.execute()
        return ChainSnapshot(
            head=as_text(head) or None,
            checkpoint=as_text(checkpoint) or None,
            newest_id=as_text(newest[0][0]) if newest else None,
            entries=int(length),
        )

    def verify(self, verifier: Verifier | None = None) -> AuditVerdict:
        """Recompute the chain in stream order; report the first edit, deletion or reordering.

        A trimmed chain starts at its checkpoint's anchor, once the checkpoint's signature
        holds with `verifier` (the orchestrator's public key).
        """
        for _ in range(MAX_VERIFY_ATTEMPTS):
            snap = self.snapshot()
            verdict = self._verify_snapshot(snap, verifier)
            # A trim between the snapshot and the scan moves the chain's start: read again.
            if verdict.ok or as_text(self.client.get(self.keys.audit_checkpoint)) == (
                snap.checkpoint or ""
            ):
                return verdict
        return verdict

    def _verify_snapshot(self, snap: ChainSnapshot, verifier: Verifier | None) -> AuditVerdict:
        walk = ChainWalk(GENESIS)
        trimmed = 0

        def fail(problem: str, entry_id: str | None) -> AuditVerdict:
            return AuditVerdict(
                ok=False, entries=walk.entries, head=snap.head or "", problem=problem,
                entry_id=entry_id, trimmed=trimmed,
            )

        if snap.checkpoint is not None:
            try:
                checkpoint = parse_checkpoint(snap.checkpoint)
            except ValueError as exc:
                return fail(str(exc), None)
            problem = checkpoint_problem(checkpoint, verifier)
            if problem:
                return fail(problem, checkpoint.anchor_id)
            walk = ChainWalk(checkpoint.anchor)
            trimmed = checkpoint.removed
        if snap.newest_id is not None:
            for entry_id, fields in self.scan(upto=snap.newest_id):
                problem = walk.step(entry_id, fields)
                if problem:
                    return fail(problem, entry_id)
        problem = walk.head_problem(snap.head)
        if problem:
            return fail(problem, walk.last_id)
        return AuditVerdict(
            ok=True, entries=walk.entries, head=snap.head or GENESIS, trimmed=trimmed
        )

    def scan(self, *, upto: str = "+") -> Iterator[tuple[str, dict[str, str]]]:
        """Entries oldest first up to the id `upto` (inclusive), as (id, decoded fields)."""
        return self._scan(reverse=False, upto=upto)

    def _scan(self, *, reverse: bool, upto: str = "+") -> Iterator[tuple[str, dict[str, str]]]:
        """Every stream entry (forward: up to `upto`) as (id, decoded fields), in batches."""
        cursor = "+" if reverse else "-"
        while True:
            if reverse:
                reply = self.client.xrevrange(
                    self.keys.audit, max=cursor, min="-", count=SCAN_BATCH
                )
            else:
                reply = self.client.xrange(self.keys.audit, min=cursor, max=upto, count=SCAN_BATCH)
            batch = cast(list[tuple[bytes, dict[bytes, bytes]]], reply or [])
            for raw_id, raw_fields in batch:
                yield as_text(raw_id), {as_text(k): as_text(v) for k, v in raw_fields.items()}
            if len(batch) < SCAN_BATCH:
                return
            # Exclusive ranges ("(" prefix) continue after the last id seen.
            cursor = "(" + as_text(batch[-1][0])


def _check_entry(
    entry_id: str, fields: Mapping[str, str], expected_prev: str, *, first: bool
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
