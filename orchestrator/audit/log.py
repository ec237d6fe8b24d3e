"""The tamper-evident audit stream: reading and verifying the chain `tasks.auditchain` appends.

`AuditLog` is the orchestrator's side: it signs every entry it appends and keeps the witness
of the newest one on its own disk (`audit.witness`); `verify` checks hashes, links, signatures
and the witness (`audit.walk.ChainWalk`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis
from pydantic import BaseModel, ConfigDict

from orchestrator.audit.checkpoint import Checkpoint, checkpoint_problem, parse_checkpoint
from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.segments import (
    PARALLEL_MIN_ENTRIES,
    default_workers,
    portable,
    raw_reader,
    read_batches,
    read_raw,
    walk_segments,
)
from orchestrator.audit.walk import ChainWalk
from orchestrator.audit.witness import HeadWitness, WitnessMark, id_order
from tasks.auditchain import (
    ENTRY_FIELDS,
    FORBIDDEN_DETAIL_KEYS,
    GENESIS,
    MAX_APPEND_ATTEMPTS,
    NO_GUARD,
    SIG_FIELD,
    AuditChain,
    AuditEntry,
    check_details,
    compute_hash,
    digest,
    mac_key_of,
    to_canonical_json,
)
from tasks.errors import LiveResponseError
from tasks.replies import as_text

if TYPE_CHECKING:
    from tasks.keys import Keys
    from tasks.signing import Signer, Verifier

log = logging.getLogger(__name__)

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
    "mac_key_of",
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
    #: The entry the orchestrator witnessed last, which the chain holds (None: no witness yet).
    witness_id: str | None = None


@dataclass(frozen=True)
class ChainSnapshot:
    """The chain's head, checkpoint, newest id and length, read at one instant, and the
    witness read just before them."""

    head: str | None
    checkpoint: str | None
    newest_id: str | None
    entries: int
    witness: WitnessMark | None = None
    #: Why the witness file could not be read (then `witness` is None).
    witness_problem: str | None = None


class AuditLog(AuditChain):
    """Appends to, reads and verifies the audit stream under one key prefix.

    Appending needs `signer` (the orchestrator's key): every entry is signed. With `witness`
    each append also records the entry in the witness file, and `snapshot` reads it.
    `trusted` (default: the signer's own key) are the keys `verify` checks with by default,
    and a checkpoint with when the witness must move past a trimmed entry.
    """

    signed_only = True

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        signer: Signer | None = None,
        *,
        witness: HeadWitness | None = None,
        trusted: TrustedKeys | None = None,
    ) -> None:
        super().__init__(client, keys, signer)
        self.witness = witness
        self._raw: redis.Redis | None = None
        # The mark this process last wrote or found in the witness file.
        self._witnessed: WitnessMark | None = None
        self.trusted = trusted or (TrustedKeys([signer.verifier()]) if signer else None)

    def close(self) -> None:
        """Close the witness file and the reader's connections."""
        if self.witness is not None:
            self.witness.close()
        if self._raw is not None:
            if self._raw.connection_pool is not self.client.connection_pool:
                self._raw.connection_pool.disconnect()
            self._raw = None

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
        for entry_id, fields in self._scan_newest_first():
            entry = _parse_entry(entry_id, fields)
            if entry is not None and matches(entry):
                found.append(entry)
                if limit is not None and len(found) >= limit:
                    break
        found.reverse()
        return found

    def snapshot(self) -> ChainSnapshot:
        """Head, checkpoint, newest entry id and length in one transaction (one instant).

        The witness is read first: an entry it names was appended before the transaction.
        """
        witness, witness_problem = None, None
        if self.witness is not None:
            try:
                witness = self.witness.read()
            except ValueError as exc:
                witness_problem = str(exc)
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
            witness=witness,
            witness_problem=witness_problem,
        )

    def verify(
        self,
        keys: Verifier | TrustedKeys | None = None,
        *,
        workers: int | None = None,
        parallel_from: int = PARALLEL_MIN_ENTRIES,
    ) -> AuditVerdict:
        """Recompute the chain in stream order; report the first entry edited, deleted,
        reordered, rechained or forged, and a chain that lost the witnessed entry.

        `keys` (the orchestrator's public key, and any it retired; default: this log's
        `trusted`) check each entry's signature, and the checkpoint a trimmed chain starts
        from. A log without keys can verify only a chain of agents' unsigned entries. Entries
        this log's own key signed are checked by their MAC. A chain of `parallel_from` entries
        or more is checked in segments by `workers` processes (default: one per CPU) when
        they can connect as this log's client does (not through Sentinel).
        """
        keys = keys if keys is not None else self.trusted
        workers = workers or default_workers()
        for _ in range(MAX_VERIFY_ATTEMPTS):
            snap = self.snapshot()
            verdict = self._verify_snapshot(
                snap, keys, workers if snap.entries >= parallel_from else 1
            )
            # A trim between the snapshot and the scan moves the chain's start: read again.
            if verdict.ok or as_text(self.client.get(self.keys.audit_checkpoint)) == (
                snap.checkpoint or ""
            ):
                return verdict
        return verdict

    def _verify_snapshot(
        self, snap: ChainSnapshot, keys: Verifier | TrustedKeys | None, workers: int
    ) -> AuditVerdict:
        walk = ChainWalk(keys)
        trimmed = 0

        def fail(problem: str, entry_id: str | None) -> AuditVerdict:
            return AuditVerdict(
                ok=False, entries=walk.entries, head=snap.head or "", problem=problem,
                entry_id=entry_id, trimmed=trimmed,
            )

        if snap.witness_problem:
            return fail(snap.witness_problem, None)
        checkpoint = None
        if snap.checkpoint is not None:
            try:
                checkpoint = parse_checkpoint(snap.checkpoint)
            except ValueError as exc:
                return fail(str(exc), None)
            problem = checkpoint_problem(checkpoint, keys)
            if problem:
                return fail(problem, checkpoint.anchor_id)
            trimmed = checkpoint.removed
        walk = ChainWalk(keys, checkpoint=checkpoint, witness=snap.witness,
                         mac_keys=self.mac_keys())
        problem = walk.start_problem()
        if problem:
            return fail(problem, snap.witness.id if snap.witness else None)
        if snap.newest_id is not None and workers > 1 and portable(self.client):
            problem, entry_id = walk_segments(
                self.client, self.keys.audit, walk, snap.newest_id,
                lambda after, upto: self.scan_batches(after=after, upto=upto), workers=workers,
            )
            if problem:
                return fail(problem, entry_id)
        elif snap.newest_id is not None:
            for batch in self.scan_batches(upto=snap.newest_id):
                found = walk.step_many(batch)
                if found:
                    return fail(*found)
        problem = walk.head_problem(snap.head)
        if problem:
            return fail(problem, walk.last_id)
        return AuditVerdict(
            ok=True, entries=walk.entries, head=snap.head or GENESIS, trimmed=trimmed,
            witness_id=snap.witness.id if snap.witness else None,
        )

    def mac_keys(self) -> dict[str, bytes]:
        """The MAC key of this log's signing key, by key id (none without a signer)."""
        return {self.signer.key_id: self._mac_key} if self.signer is not None else {}

    def _guard(self) -> tuple[str, str]:
        """The entry this process last saw witnessed: the append script checks it is still
        in the stream (`_appended` reads the file itself, under its lock)."""
        mark = self._witnessed
        return (mark.id, mark.hash) if mark is not None else NO_GUARD

    def _appended(self, entry: AuditEntry, guard: tuple[str, str], held: bool) -> None:
        """Move the witness to `entry`, unless the chain lost the entry witnessed before."""
        if self.witness is None:
            return
        try:
            self._witnessed = self.witness.update(
                lambda current: self._next_mark(current, entry, guard, held)
            )
        except (OSError, ValueError, LiveResponseError, redis.RedisError) as exc:
            # The entry is in the stream already; failing the request would not undo it.
            log.error("audit: cannot record entry %s in the witness: %s", entry.id, exc)

    def _next_mark(
        self, current: WitnessMark | None, entry: AuditEntry, guard: tuple[str, str], held: bool
    ) -> WitnessMark | None:
        """What the witness holds once `entry` is appended; None: leave it as it is."""
        mark = WitnessMark(entry.id, entry.hash)
        if current is None:
            return mark  # the first entry witnessed on this disk
        if id_order(current.id) >= id_order(entry.id):
            return None  # another process witnessed a later entry meanwhile
        # The script checked `guard`; if another process (or a restart) moved the witness
        # since, the entry it names is checked now, after the append.
        if held if (current.id, current.hash) == guard else self._holds(current):
            return WitnessMark(entry.id, entry.hash, current.anchor_id, current.anchor)
        # The witnessed entry is gone: only a trim under a checkpoint that verifies may have
        # removed it. Otherwise the witness stays, and `verify` keeps naming the loss.
        checkpoint = self._covering_checkpoint(current)
        if checkpoint is None:
            log.error(
                "audit: the chain no longer holds entry %s, the newest this orchestrator "
                "wrote; its witness stays there (run lr audit verify)", current.id,
            )
            return None
        return current.merged(
            WitnessMark(entry.id, entry.hash, checkpoint.anchor_id, checkpoint.anchor)
        )

    def _holds(self, mark: WitnessMark) -> bool:
        """Whether the stream still holds the entry `mark` names, with its hash."""
        found = cast(list[tuple[bytes, dict[bytes, bytes]]],
                     self.client.xrange(self.keys.audit, min=mark.id, max=mark.id))
        return bool(found) and found[0][1].get(b"hash") == mark.hash.encode()

    def _covering_checkpoint(self, mark: WitnessMark) -> Checkpoint | None:
        """The checkpoint in force when it verifies and its trim removed the entry `mark`."""
        raw = as_text(self.client.get(self.keys.audit_checkpoint))
        if not raw or self.trusted is None:
            return None
        try:
            checkpoint = parse_checkpoint(raw)
        except ValueError:
            return None
        if checkpoint_problem(checkpoint, self.trusted):
            return None
        if id_order(checkpoint.anchor_id) > id_order(mark.id) or (
            checkpoint.anchor_id == mark.id and checkpoint.anchor == mark.hash
        ):
            return checkpoint
        return None

    def scan(
        self, *, after: str | None = None, upto: str = "+"
    ) -> Iterator[tuple[str, dict[str, str]]]:
        """Entries oldest first after the id `after` (exclusive; None: from the first) up to
        the id `upto` (inclusive), as (id, decoded fields)."""
        return read_raw(self._raw_reader(), self.keys.audit, after, upto)

    def scan_batches(
        self, *, after: str | None = None, upto: str = "+"
    ) -> Iterator[list[tuple[str, list[str]]]]:
        """The entries of `scan` as XRANGE returns them, in its batches (`read_batches`)."""
        return read_batches(self._raw_reader(), self.keys.audit, after, upto)

    def _raw_reader(self) -> redis.Redis:
        if self._raw is None:
            self._raw = raw_reader(self.client)
        return self._raw

    def _scan_newest_first(self) -> Iterator[tuple[str, dict[str, str]]]:
        """Every stream entry, newest first, as (id, decoded fields), in batches."""
        cursor = "+"
        while True:
            reply = self.client.xrevrange(self.keys.audit, max=cursor, min="-", count=SCAN_BATCH)
            batch = cast(list[tuple[bytes, dict[bytes, bytes]]], reply or [])
            for raw_id, raw_fields in batch:
                yield as_text(raw_id), {as_text(k): as_text(v) for k, v in raw_fields.items()}
            if len(batch) < SCAN_BATCH:
                return
            # Exclusive ranges ("(" prefix) continue after the last id seen.
            cursor = "(" + as_text(batch[-1][0])


def _parse_entry(entry_id: str, fields: dict[str, str]) -> AuditEntry | None:
    """A stored entry as a model; None when it is too damaged to read (verify reports it)."""
    try:
        details = json.loads(fields["details"])
        body: dict[str, Any] = {name: fields[name] for name in ENTRY_FIELDS}
        body.update(ts=float(fields["ts"]), details=details if isinstance(details, dict) else {})
        return AuditEntry(id=entry_id, **body, sig=fields.get(SIG_FIELD))
    except (KeyError, ValueError):
        return None
