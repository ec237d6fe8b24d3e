"""The command record: what the orchestrator knows of one command, as the API returns it."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from tasks.envelope import CommandStatus, ErrorInfo


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
