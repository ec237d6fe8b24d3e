"""Base classes of every command's argument and result models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CommandArgs(BaseModel):
    """Arguments of one command: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandResult(BaseModel):
    """Result of one command: unknown fields refused, so both sides agree on the shape."""

    model_config = ConfigDict(extra="forbid")
