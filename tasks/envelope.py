"""The envelope a command travels in, the outcome an agent returns, and the status enum."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CommandStatus(StrEnum):
    """Where a command is in its life; the final ones never change again."""

    PENDING_APPROVAL = "pending-approval"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        """True for states a command cannot leave."""
        return self not in (self.PENDING_APPROVAL, self.QUEUED, self.RUNNING)


class ErrorInfo(BaseModel):
    """A failure as data: stable code, one-line message, optional hint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str
    hint: str | None = None


class SignedRecord(BaseModel):
    """What the orchestrator signs: every field but `signature`, as sorted compact JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Id of the key that signed the record (covered by the signature, so it cannot be swapped).
    key_id: str | None = None
    signature: str | None = None

    def canonical_bytes(self) -> bytes:
        """The bytes a signature covers: every field but the signature, as sorted compact JSON."""
        body = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class CommandEnvelope(SignedRecord):
    """What the orchestrator sends to an agent: one command, addressed and time-bounded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str
    device_id: str
    session_id: str
    user: str
    command: str
    args: dict[str, Any] = Field(default_factory=dict)
    cwd: str | None = None
    issued_at: float
    expires_at: float


class CommandOutcome(BaseModel):
    """What an agent returns for one envelope: status plus result model or error."""

    model_config = ConfigDict(extra="forbid")

    command_id: str
    device_id: str
    command: str
    status: CommandStatus
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    truncated: bool = False
    started_at: float | None = None
    finished_at: float | None = None
