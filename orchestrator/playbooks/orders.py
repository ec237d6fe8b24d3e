"""The signed order that makes the orchestrator worker execute a playbook run.

Redis is inside the threat model: anyone who can write to it can push a task into the
worker's queue. So the task carries a `RunOrder` signed with the orchestrator's own key, binding
the run id, the user it runs as, the device, the playbook's sha256 and the inputs; the worker
checks the signature (and the playbook text against the signed digest) before anything runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError

from orchestrator.plane import ControlPlane
from tasks import clock
from tasks.envelope import SignedRecord
from tasks.errors import SignatureError

#: Celery task name of a playbook run.
RUN_TASK = "lr.playbook.run"


def orchestrator_queue(prefix: str) -> str:
    """The queue only orchestrator workers of this key prefix consume (never a device's)."""
    return "lr.orchestrator" if prefix == "lr" else f"lr.orchestrator.{prefix}"


def new_run_id() -> str:
    """A fresh run id: "R" and 12 hex digits."""
    return "R" + uuid.uuid4().hex[:12]


class RunOrder(SignedRecord):
    """One playbook run, as the orchestrator decided it (every field signed)."""

    run_id: str
    user: str
    device_id: str
    playbook: str
    playbook_sha256: str
    inputs: dict[str, Any]
    #: The alert rule that started the run, if an alert did.
    rule: str | None = None
    issued_at: float
    expires_at: float


def sign_order(plane: ControlPlane, order: RunOrder) -> RunOrder:
    """`order` naming the orchestrator's key and signed by it."""
    named = order.model_copy(update={"key_id": plane.signer.key_id, "signature": None})
    return named.model_copy(
        update={"signature": plane.signer.sign_bytes(named.canonical_bytes())})


def verify_order(plane: ControlPlane, raw: Any) -> RunOrder:
    """The order in a task message, once its signature is the orchestrator's and it has not
    expired; SignatureError (code: malformed, unsigned, unknown_key, bad_signature, expired)."""
    try:
        order = RunOrder.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "order"
        raise SignatureError("malformed", f"not a playbook order: {where}: {first['msg']}"
                             ) from None
    verifier = plane.signer.verifier()
    if not order.signature:
        raise SignatureError("unsigned", "the playbook order carries no signature")
    if order.key_id != verifier.key_id:
        raise SignatureError("unknown_key", f"the playbook order is signed by key "
                             f"{order.key_id!r}, not the orchestrator's {verifier.key_id!r}")
    if not verifier.verify_bytes(order.canonical_bytes(), order.signature):
        raise SignatureError("bad_signature",
                             "the signature does not match the playbook order's content")
    if clock.now() > order.expires_at:
        raise SignatureError("expired", f"the order of run {order.run_id} expired; a run is "
                             "resumed only within its order's lifetime",
                             hint="start the playbook again")
    return order


def claimed_user(raw: Any) -> str | None:
    """Who a (possibly forged) order claims to run as, for the audit entry of its refusal."""
    user = raw.get("user") if isinstance(raw, dict) else None
    return user if isinstance(user, str) and len(user) <= 64 else None
