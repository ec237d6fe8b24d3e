"""One audit entry as the chain hands it back, and appended entries read from their JSON."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError


class AuditEntry(BaseModel):
    """One audit record as stored: who did what to which target, the decision, and its links."""

    model_config = ConfigDict(frozen=True)

    id: str
    ts: float
    actor: str
    action: str
    target: str
    decision: str
    details: dict[str, Any]
    prev: str
    hash: str
    #: `<key id>:<signature>` when the orchestrator wrote it; None for an agent's entry.
    sig: str | None = None


def entry_json(body_text: str, entry_id: str, entry_hash: str, sig_json: str) -> str:
    """An appended entry as JSON: its body's canonical JSON (what its hash covers), its id,
    its hash and its `sig` (as JSON)."""
    return f'{body_text[:-1]},"id":"{entry_id}","hash":"{entry_hash}","sig":{sig_json}}}'


def parse_entry(text: str) -> AuditEntry:
    """The entry of an `entry_json`."""
    try:
        return AuditEntry.model_validate_json(text)
    except ValidationError:
        # pydantic's JSON parser refuses a lone surrogate's \u escape, which details may hold.
        return AuditEntry.model_validate(json.loads(text))


def parse_entries(entries_json: str) -> list[AuditEntry]:
    """The entries of a JSON array of `entry_json`s, in one parse."""
    try:
        return _entries_adapter().validate_json(entries_json)
    except ValidationError:
        # As in `parse_entry`.
        return [AuditEntry.model_validate(entry) for entry in json.loads(entries_json)]


@functools.cache
def _entries_adapter() -> TypeAdapter[list[AuditEntry]]:
    """Reads a JSON array of entries in one call (built on first use: agents need none)."""
    return TypeAdapter(list[AuditEntry])
