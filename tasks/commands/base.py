"""Base classes of every command's argument and result models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class CommandArgs(BaseModel):
    """Arguments of one command: frozen, unknown fields refused, no NUL byte in any text
    (no path or name of any endpoint can hold one; the OS would refuse it later)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, str) and "\x00" in v for v in values):
            raise ValueError("a NUL byte is not allowed in a path or name")
        return value


class CommandResult(BaseModel):
    """Result of one command: unknown fields refused, so both sides agree on the shape."""

    model_config = ConfigDict(extra="forbid")
