"""Trimming old audit entries, atomically with the signed checkpoint the rest verifies from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrator.audit.checkpoint import (
    Checkpoint,
    checkpoint_problem,
    parse_checkpoint,
    sign_checkpoint,
)
from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.log import AuditEntry, AuditLog, ChainWalk
from tasks import clock
from tasks.errors import AuditChainBrokenError, LiveResponseError, UsageError
from tasks.replies import as_text

if TYPE_CHECKING:
    from tasks.signing import Signer

#: How often a trim plans again after the stream's start or checkpoint changed under it.
MAX_TRIM_ATTEMPTS = 5
#: The latest time a trim may name: the end of the year 9999, what a datetime can show.
LATEST_TRIM_TS = 253402300799.0
#: What a refused trim tells the admin to do.
BROKEN_HINT = (
    "nothing was removed; preserve the stream (lr audit export) and investigate (lr audit verify)"
)

# KEYS[1] = stream, KEYS[2] = checkpoint. ARGV[1] = checkpoint the plan read ('' = none),
# ARGV[2] = oldest id the plan read, ARGV[3] = anchor id, ARGV[4] = anchor hash,
# ARGV[5] = MINID (first id kept at or above), ARGV[6] = new checkpoint JSON.
# Removes the entries up to the anchor and writes the checkpoint in one step, only while the
# stream still starts where the plan read it and the anchor is not the newest entry.
# Returns {1, removed} or {0, reason}.
_TRIM_LUA = """
local checkpoint = redis.call('GET', KEYS[2]) or ''
if checkpoint ~= ARGV[1] then return {0, 'the checkpoint changed'} end
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #oldest == 0 or oldest[1][1] ~= ARGV[2] then return {0, 'the oldest entry changed'} end
local anchor = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if #anchor == 0 then return {0, 'the anchor entry is gone'} end
local hash = nil
local fields = anchor[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'hash' then hash = fields[i + 1] end
end
if hash ~= ARGV[4] then return {0, 'the anchor entry changed'} end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if newest[1][1] == ARGV[3] then return {0, 'the anchor is the newest entry'} end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])
redis.call('SET', KEYS[2], ARGV[6])
return {1, removed}
"""


@dataclass(frozen=True)
class TrimPlan:
    """What a trim would remove: up to and including the anchor entry."""

    oldest_id: str
    anchor_id: str
    anchor_hash: str
    anchor_ts: float
    count: int


@dataclass(frozen=True)
class TrimResult:
    """What a trim did: how many entries it removed, the checkpoint now in force, its entry."""

    removed: int
    message: str
    checkpoint: Checkpoint | None = None
    entry: AuditEntry | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as the API returns it."""
        return {
            "removed": self.removed,
            "message": self.message,
            "checkpoint": self.checkpoint.model_dump(mode="json") if self.checkpoint else None,
            "entry_id": self.entry.id if self.entry else None,
        }


def trim_audit(log: AuditLog, signer: Signer, *, actor: str, before: float) -> TrimResult:
    """Remove every entry older than `before` (never the newest) and sign a checkpoint.

    Refuses (AuditChainBrokenError) when the entries to remove (their hashes, links and
    signatures) or the checkpoint in force do not verify: a trim must never erase the
    evidence of tampering. Appends `audit.trimmed`. UsageError when `before` is not a time
    between the epoch and the year 9999.
    """
    check_trim_time(before)
    script = log.client.register_script(_TRIM_LUA)
    current = signer.verifier()
    keys = log.trusted.with_current(current) if log.trusted else TrustedKeys([current])
    for _ in range(MAX_TRIM_ATTEMPTS):
        raw_checkpoint = as_text(log.client.get(log.keys.audit_checkpoint))
        previous = _trusted_checkpoint(raw_checkpoint, keys)
        plan = plan_trim(log, previous, before, keys)
        if plan is None:
            return TrimResult(removed=0, message=_nothing_to_trim(log, before))
        checkpoint = sign_checkpoint(
            signer,
            anchor=plan.anchor_hash,
            anchor_id=plan.anchor_id,
            anchor_ts=plan.anchor_ts,
            removed=plan.count + (previous.removed if previous else 0),
            trimmed_at=float(clock.now()),
        )
        status, value = script(
            keys=[log.keys.audit, log.keys.audit_checkpoint],
            args=[raw_checkpoint, plan.oldest_id, plan.anchor_id, plan.anchor_hash,
                  _next_id(plan.anchor_id), checkpoint.to_json()],
        )
        if status == 1:
            break
    else:
        raise LiveResponseError(
            f"the audit stream kept changing while trimming ({as_text(value)})",
            hint="retry the trim",
        )
    removed = int(value)
    entry = log.append(
        actor, "audit.trimmed", "audit", "allowed",
        before=before, removed=removed, removed_total=checkpoint.removed,
        anchor=checkpoint.anchor, anchor_id=checkpoint.anchor_id, key_id=checkpoint.key_id,
    )
    if removed != plan.count:
        raise AuditChainBrokenError(
            f"the trim removed {removed} audit entries where {plan.count} were checked: "
            "entries were deleted while trimming",
            hint="preserve the stream and investigate (lr audit verify)",
        )
    return TrimResult(
        removed=removed,
        message=f"removed {removed} audit entries older than {_iso(before)}; "
        f"{checkpoint.removed} removed in total, under a checkpoint signed by {signer.key_id}",
        checkpoint=checkpoint,
        entry=entry,
    )


def plan_trim(
    log: AuditLog, previous: Checkpoint | None, before: float, keys: TrustedKeys
) -> TrimPlan | None:
    """The oldest run of entries with ts < `before`, short of the newest; None if there is none.

    Every entry looked at is checked against the chain and its signature against `keys`; a
    problem raises AuditChainBrokenError.
    """
    newest_id = log.snapshot().newest_id
    walk = ChainWalk(keys, checkpoint=previous)
    oldest_id: str | None = None
    last: tuple[str, str, float] | None = None
    count = whole = 0
    for entry_id, fields in log.scan(upto=newest_id or "+"):
        if entry_id == newest_id:
            break
        problem = walk.step(entry_id, fields)
        if problem:
            raise AuditChainBrokenError(f"refusing to trim: {problem}", hint=BROKEN_HINT)
        ts = float(fields["ts"])
        if ts >= before:
            break
        oldest_id = oldest_id or entry_id
        count += 1
        # Never inside a run: its entries are checked by its last one's signature, which
        # must be checked (here) before any of them is removed.
        if not walk.pending:
            last, whole = (entry_id, fields["hash"], ts), count
    if oldest_id is None or last is None:
        return None
    return TrimPlan(oldest_id, last[0], last[1], last[2], count=whole)


def _trusted_checkpoint(raw: str, keys: TrustedKeys) -> Checkpoint | None:
    """The checkpoint in force, once its signature holds; a trim never extends a forged one."""
    if not raw:
        return None
    try:
        checkpoint = parse_checkpoint(raw)
    except ValueError as exc:
        raise AuditChainBrokenError(f"refusing to trim: {exc}", hint=BROKEN_HINT) from None
    problem = checkpoint_problem(checkpoint, keys)
    if problem:
        raise AuditChainBrokenError(f"refusing to trim: {problem}", hint=BROKEN_HINT)
    return checkpoint


def _nothing_to_trim(log: AuditLog, before: float) -> str:
    oldest = next(log.scan(), None)
    if oldest is None:
        return "nothing to trim: the audit stream is empty"
    try:
        oldest_ts = _iso(float(oldest[1]["ts"]))
    except (KeyError, ValueError, OverflowError, OSError):
        oldest_ts = "an unreadable time"
    return (
        f"nothing to trim: no audit entry but the newest is older than {_iso(before)} "
        f"(the oldest is from {oldest_ts}; the newest entry is always kept)"
    )


def _next_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id`: XTRIM MINID keeps it and all later ones."""
    ms, seq = entry_id.split("-")
    return f"{ms}-{int(seq) + 1}"


def check_trim_time(before: float) -> None:
    """`before` as a time a trim can name; UsageError naming it otherwise."""
    if not 0 <= before <= LATEST_TRIM_TS:
        raise UsageError(f"cannot trim before {before!r}: not a time between 1970 and 9999",
                         hint="give --before as a date, e.g. 2025-01-31, or seconds since 1970")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")
