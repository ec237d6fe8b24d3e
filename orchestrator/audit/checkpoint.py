"""The signed checkpoint a trim leaves behind, so the rest of the audit chain still verifies."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.audit.keys import TrustedKeys
from tasks.auditchain import to_canonical_json

if TYPE_CHECKING:
    from tasks.signing import Signer, Verifier

#: A sha256 hex digest, as the chain's hashes are written.
HASH_PATTERN = r"^[0-9a-f]{64}$"
#: A Redis stream id (`<ms>-<seq>`).
STREAM_ID_PATTERN = r"^[0-9]+-[0-9]+$"


class Checkpoint(BaseModel):
    """Where a trimmed chain now starts: the last removed entry, counted and signed.

    `anchor` is the hash of the newest removed entry, so the oldest kept entry's `prev` must
    equal it; `removed` counts every entry removed by all trims so far.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    anchor: str = Field(pattern=HASH_PATTERN)
    anchor_id: str = Field(pattern=STREAM_ID_PATTERN)
    anchor_ts: float
    removed: int = Field(ge=1)
    trimmed_at: float
    key_id: str = Field(min_length=1, max_length=200)
    signature: str = Field(min_length=1, max_length=200)

    def signed_bytes(self) -> bytes:
        """Canonical JSON of every field but the signature: what the signature covers."""
        return to_canonical_json(self.model_dump(mode="json", exclude={"signature"})).encode()

    def to_json(self) -> str:
        """The checkpoint as stored in Redis."""
        return to_canonical_json(self.model_dump(mode="json"))


def sign_checkpoint(
    signer: Signer,
    *,
    anchor: str,
    anchor_id: str,
    anchor_ts: float,
    removed: int,
    trimmed_at: float,
) -> Checkpoint:
    """A checkpoint with these fields, signed by `signer`."""
    unsigned = Checkpoint(
        anchor=anchor,
        anchor_id=anchor_id,
        anchor_ts=anchor_ts,
        removed=removed,
        trimmed_at=trimmed_at,
        key_id=signer.key_id,
        signature="-",
    )
    return unsigned.model_copy(update={"signature": signer.sign_bytes(unsigned.signed_bytes())})


def parse_checkpoint(raw: str | dict[str, Any]) -> Checkpoint:
    """A checkpoint from its stored JSON text or an already decoded object; ValueError if bad."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Checkpoint.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "checkpoint"
        raise ValueError(f"checkpoint is malformed: {where}: {first['msg']} (altered)") from None
    except ValueError as exc:
        raise ValueError(f"checkpoint is malformed: {exc} (altered)") from None


def checkpoint_problem(
    checkpoint: Checkpoint, keys: Verifier | TrustedKeys | None
) -> str | None:
    """Why `checkpoint` cannot be trusted with `keys`; None when its signature holds."""
    trusted = TrustedKeys.of(keys)
    if trusted is None:
        return "the chain was trimmed, but no public key is available to check its checkpoint"
    verifier = trusted.get(checkpoint.key_id)
    if verifier is None:
        return (
            f"checkpoint is signed by key {checkpoint.key_id!r}, not by the key given "
            f"({trusted.describe()}): forged, or checked with the wrong public key"
        )
    if not verifier.verify_bytes(checkpoint.signed_bytes(), checkpoint.signature):
        return "checkpoint signature does not verify (checkpoint forged or altered)"
    return None
