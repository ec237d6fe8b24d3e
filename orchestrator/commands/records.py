"""The command record: what the orchestrator knows of one command, as the API returns it.

This module is the one owner of the record's Redis hash (`lr:cmd:<id>`) and its encoding:
every field JSON, the status as the plain `state` field the agent moves atomically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tasks import clock
from tasks.commands.base import CommandResult
from tasks.envelope import CommandStatus, ErrorInfo
from tasks.errors import CommandNotFoundError, InvalidResultError
from tasks.registry import REGISTRY
from tasks.replies import as_text

if TYPE_CHECKING:
    from orchestrator.plane import ControlPlane

log = logging.getLogger(__name__)

#: Seconds we keep command records.
RECORD_TTL_S = 7 * 24 * 60 * 60


class CommandRecord(BaseModel):
    """One command from request to outcome."""

    command_id: str
    session_id: str
    device_id: str
    user: str
    command: str
    line: str
    #: The parsed (and, for library commands, resolved) arguments the envelope carries.
    args: dict[str, Any] | None = None
    status: CommandStatus
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    truncated: bool = False
    created_at: float
    expires_at: float | None = None
    #: Set while a second person must approve: the command expires unapproved at this time.
    approval_expires_at: float | None = None
    #: Who approved or denied the command, when a second person had to.
    decided_by: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: Live progress of a long command (file transfers: {"bytes": n, "size": total}).
    progress: dict[str, Any] | None = None
    #: Set when the command runs in the background: the session's job number.
    job: int | None = None
    #: Set when the command is one device's share of a fleet batch.
    batch_id: str | None = None
    #: The orchestrator recorded the command's outcome (result, error) and audited it.
    outcome_recorded: bool = False


def record_fields(record: CommandRecord) -> dict[str, str]:
    """A record as its Redis hash: JSON per field, the status as the plain `state` field."""
    data: dict[str, Any] = record.model_dump(mode="json")
    out = {k: json.dumps(v) for k, v in data.items() if k not in ("status",)}
    out["state"] = record.status.value
    return out


def record_from_fields(raw: dict[str, str]) -> CommandRecord:
    """Rebuild a record from its Redis hash (state is the live field the agent moves)."""
    data: dict[str, Any] = {}
    for name in CommandRecord.model_fields:
        if name in raw and name != "status":
            try:
                data[name] = json.loads(raw[name])
            except json.JSONDecodeError:
                data[name] = raw[name]
    data["status"] = raw["state"]
    return CommandRecord.model_validate(data)


def typed_result(record: CommandRecord) -> CommandResult | None:
    """The record's result as its command's result model (the registry's); None while it has
    none. Raises InvalidResultError naming the model and the first field that does not fit."""
    if record.result is None:
        return None
    spec = REGISTRY.get(record.command)
    if spec is None:
        raise InvalidResultError(f"{record.command!r} is not a command this orchestrator knows: "
                                 "its result cannot be checked")
    return spec.parse_result(record.result)


def served_record(record: CommandRecord) -> CommandRecord:
    """The record as the API answers it, its result checked by `typed_result`.

    A result that does not fit is withheld: the status stays, `result` is null and `error`
    says `invalid_result`, naming the model and the field (what the command reported itself,
    if anything, is kept in the message). The stored record keeps the result as it arrived.
    """
    try:
        result = typed_result(record)
    except InvalidResultError as exc:
        log.warning("command %s (%s): %s", record.command_id, record.command, exc.message)
        message = exc.message
        if record.error is not None:
            message += f"; the command also reported {record.error.code}: {record.error.message}"
        error = ErrorInfo(code=exc.code, message=message, hint=exc.hint)
        return record.model_copy(update={"result": None, "error": error})
    if result is None:
        return record
    return record.model_copy(update={"result": result.model_dump(mode="json")})


def stage_record(pipe: Any, plane: ControlPlane, record: CommandRecord) -> None:
    """Queue the write of the whole record (and its time to live) on `pipe`, and keep the
    set of commands without a recorded outcome (`Keys.open_commands`) in step with it."""
    key = plane.keys.command(record.command_id)
    pipe.hset(key, mapping=record_fields(record))
    pipe.expire(key, RECORD_TTL_S)
    if record.outcome_recorded:
        pipe.srem(plane.keys.open_commands, record.command_id)
    else:
        pipe.sadd(plane.keys.open_commands, record.command_id)


#: The record field whose first writer records (and audits) the command's outcome.
OUTCOME_CLAIM = "outcome_claimed"


def claim_outcome(plane: ControlPlane, command_id: str) -> bool:
    """Whether this caller is the one to record the command's outcome (first one wins), so
    two collectors never audit one outcome twice."""
    key = plane.keys.command(command_id)
    return bool(plane.client.hsetnx(key, OUTCOME_CLAIM, repr(clock.now())))


def stage_records_alike(pipe: Any, plane: ControlPlane, records: list[CommandRecord]) -> None:
    """Queue the writes of many records that differ only in command and device id (a batch's
    commands): the shared fields are encoded once."""
    if not records:
        return
    shared = record_fields(records[0])
    for record in records:
        key = plane.keys.command(record.command_id)
        pipe.hset(key, mapping={**shared, "command_id": json.dumps(record.command_id),
                                "device_id": json.dumps(record.device_id)})
        pipe.expire(key, RECORD_TTL_S)
    pipe.sadd(plane.keys.open_commands, *(r.command_id for r in records))


def stage_fields(pipe: Any, plane: ControlPlane, command_id: str, **fields: Any) -> None:
    """Queue the write of some of a record's fields (never `state`: see CommandStateStore)."""
    pipe.hset(plane.keys.command(command_id),
              mapping={name: json.dumps(value) for name, value in fields.items()})


def encode_fields(**fields: Any) -> dict[str, str]:
    """Record fields as stored, for a state transition that sets them with the new state."""
    return {name: json.dumps(value) for name, value in fields.items()}


def load_record(plane: ControlPlane, command_id: str) -> CommandRecord:
    """A command's stored record (CommandNotFoundError when unknown)."""
    raw = plane.states.get(command_id)
    if not raw:
        raise CommandNotFoundError(f"unknown command id {command_id!r}",
                                   hint="list commands with `lr jobs SESSION` or `lr audit show`")
    return record_from_fields(raw)


def load_records(plane: ControlPlane, command_ids: Iterable[str]) -> list[CommandRecord]:
    """The records of `command_ids` that still exist, in order, read in one round trip."""
    ids = list(command_ids)
    pipe = plane.client.pipeline(transaction=False)
    for command_id in ids:
        pipe.hgetall(plane.keys.command(command_id))
    out = []
    for raw in pipe.execute():
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        if fields.get("state"):
            out.append(record_from_fields(fields))
    return out


def session_records(plane: ControlPlane, session_id: str) -> list[CommandRecord]:
    """Every command of a session still on record, oldest first."""
    ids = [as_text(i) for i in plane.client.lrange(plane.keys.session_commands(session_id),
                                                   0, -1)]
    return load_records(plane, ids)


def device_of(plane: ControlPlane, command_id: str) -> str:
    """The device a recorded command is addressed to ('' when unknown)."""
    raw = plane.client.hget(plane.keys.command(command_id), "device_id")
    return str(json.loads(raw)) if raw else ""


def expire_pending(plane: ControlPlane, command_id: str) -> bool:
    """Expire a command still waiting for approval (audited); False if it was not waiting."""
    moved, _ = plane.states.transition(command_id, CommandStatus.EXPIRED,
                                       [CommandStatus.PENDING_APPROVAL],
                                       encode_fields(finished_at=clock.now()))
    plane.client.zrem(plane.keys.approvals, command_id)
    if moved:
        record = load_record(plane, command_id)
        plane.audit.append("orchestrator", "command.expired", record.device_id, "expired",
                           session=record.session_id or None, device=record.device_id,
                           command_id=command_id, command=record.command,
                           requested_by=record.user, reason="approval window passed")
    return moved
