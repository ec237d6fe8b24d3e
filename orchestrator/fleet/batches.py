"""A batch: one command line sent to many devices, one command each, under one id.

The batch's hash holds what was asked (line, selector, owner, times) and the devices refused
before anything was sent; its list holds `device<TAB>command_id` in the order the devices
were named. Each device's command is an ordinary command record (`batch_id` set), so its
state, result and audit entries are those of any command.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from orchestrator.commands.records import CommandRecord, load_records
from tasks.envelope import CommandStatus, ErrorInfo
from tasks.errors import NotFoundError
from tasks.replies import as_text

if TYPE_CHECKING:
    from orchestrator.plane import ControlPlane

#: Status of a device the pipeline refused: no command was sent to it.
DENIED = "denied"
#: Seconds we keep batches (as long as their command records).
BATCH_TTL_S = 7 * 24 * 60 * 60


class BatchEntry(BaseModel):
    """One device of a batch: its command's status and outcome (or why it was refused)."""

    device: str
    status: str
    command_id: str | None = None
    command: str | None = None
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    truncated: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    #: The outcome is recorded: the status is final and the result (if any) is here.
    recorded: bool = False

    @property
    def final(self) -> bool:
        return self.status == DENIED or (CommandStatus(self.status).final and self.recorded)


class Batch(BaseModel):
    """A fleet command: what was asked, live counts by status, and (shown) each device."""

    id: str
    user: str
    line: str
    command: str
    selector: str
    created_at: float
    expires_at: float
    total: int
    counts: dict[str, int] = {}
    #: Every device's command has ended (or was refused).
    finished: bool = False
    entries: list[BatchEntry] = []


def stage_batch(pipe: Any, plane: ControlPlane, batch: Batch, pairs: list[tuple[str, str]],
                denied: dict[str, ErrorInfo]) -> None:
    """Queue the writes of a new batch on `pipe`: its hash, its device list, its indexes."""
    keys = plane.keys
    pipe.hset(keys.batch(batch.id), mapping={
        "id": batch.id, "user": batch.user, "line": batch.line, "command": batch.command,
        "selector": batch.selector, "created_at": repr(batch.created_at),
        "expires_at": repr(batch.expires_at), "total": str(batch.total),
        "denied": json.dumps({d: e.model_dump(mode="json") for d, e in denied.items()}),
    })
    if pairs:
        pipe.rpush(keys.batch_commands(batch.id), *(f"{d}\t{c}" for d, c in pairs))
    pipe.expire(keys.batch(batch.id), BATCH_TTL_S)
    pipe.expire(keys.batch_commands(batch.id), BATCH_TTL_S)
    pipe.zadd(keys.batches, {batch.id: batch.created_at})


def batch_ids(plane: ControlPlane, limit: int = 100) -> list[str]:
    """The newest batch ids first."""
    return [as_text(b) for b in plane.client.zrevrange(plane.keys.batches, 0, limit - 1)]


def load_batch(plane: ControlPlane, batch_id: str) -> Batch:
    """The batch with every device's entry (two round trips); NotFoundError when unknown."""
    pipe = plane.client.pipeline(transaction=False)
    pipe.hgetall(plane.keys.batch(batch_id))
    pipe.lrange(plane.keys.batch_commands(batch_id), 0, -1)
    raw, listed = pipe.execute()
    if not raw:
        raise NotFoundError(f"unknown batch {batch_id!r}",
                            hint="list batches with `lr batch list`")
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    pairs = [tuple(as_text(item).split("\t", 1)) for item in listed]
    records = {r.command_id: r for r in load_records(plane, [c for _, c in pairs])}
    entries = [_entry(device, records.get(cid), cid) for device, cid in pairs]
    for device, error in json.loads(fields.get("denied") or "{}").items():
        entries.append(BatchEntry(device=device, status=DENIED, recorded=True,
                                  error=ErrorInfo.model_validate(error)))
    counts = Counter(e.status for e in entries)
    return Batch(
        id=batch_id, user=fields["user"], line=fields["line"], command=fields["command"],
        selector=fields["selector"], created_at=float(fields["created_at"]),
        expires_at=float(fields["expires_at"]), total=int(fields["total"]),
        counts=dict(sorted(counts.items())), finished=all(e.final for e in entries),
        entries=entries,
    )


def batch_command_ids(plane: ControlPlane, batch_id: str) -> list[str]:
    """The command ids of a batch, in device order."""
    return [as_text(i).split("\t", 1)[1]
            for i in plane.client.lrange(plane.keys.batch_commands(batch_id), 0, -1)]


def _entry(device: str, record: CommandRecord | None, command_id: str) -> BatchEntry:
    if record is None:  # its record outlived by the batch (both expire together, normally)
        return BatchEntry(device=device, status=CommandStatus.EXPIRED.value,
                          command_id=command_id, recorded=True,
                          error=ErrorInfo(code="record_gone",
                                          message="the command's record is no longer kept"))
    return BatchEntry(
        device=device, status=record.status.value, command_id=record.command_id,
        command=record.command, result=record.result, error=record.error,
        truncated=record.truncated, started_at=record.started_at,
        finished_at=record.finished_at, recorded=record.outcome_recorded,
    )
