"""Redis replies as text: the one place bytes from Redis become str."""

from __future__ import annotations


def as_text(value: object) -> str:
    """`value` as str: bytes decoded as UTF-8, None as "", anything else through str()."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
