"""The command record: what the orchestrator knows of one command, as the API returns it."""

from __future__ import annotations

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
    status: CommandStatus
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    truncated: bool = False
    created_at: float
    expires_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
