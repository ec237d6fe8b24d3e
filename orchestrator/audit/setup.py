"""The orchestrator's audit log as Settings configure it: signed, witnessed, its keys trusted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.log import AuditLog
from orchestrator.audit.witness import HeadWitness

if TYPE_CHECKING:
    import redis

    from config import Settings
    from tasks.keys import Keys
    from tasks.signing import Signer


def orchestrator_audit_log(
    settings: Settings, client: redis.Redis, keys: Keys, signer: Signer
) -> AuditLog:
    """Entries signed by `signer`, the head witnessed in `settings.audit_witness_path()`, and
    signatures checked with its key and the keys it retired (`<key dir>/retired/`)."""
    return AuditLog(
        client, keys, signer,
        witness=HeadWitness.for_prefix(settings.audit_witness_path(), keys.prefix),
        trusted=TrustedKeys.with_retired(signer.verifier(), settings.signing_key_path().parent),
    )
