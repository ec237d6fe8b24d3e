"""The signed cancel order: how the orchestrator tells one agent to stop a running command.

Agents obey no Celery remote control that changes them (anyone who can write to the broker can
send one), so a cancel travels as a custom control command whose one argument is this order,
signed like a command envelope and checked by the agent before it stops anything.
"""

from __future__ import annotations

from typing import Literal

from tasks.envelope import SignedRecord

#: Name of the remote control command that carries a cancel order to an agent's node.
CANCEL_CONTROL = "lr_cancel"
#: Seconds a cancel order stays valid after it is signed (a broadcast arrives in milliseconds).
CANCEL_TTL_S = 60.0


class CancelOrder(SignedRecord):
    """Stop command `command_id` on device `device_id`, signed by the orchestrator."""

    #: Covered by the signature, so no other signed record can pass for a cancel order.
    kind: Literal["cancel"] = "cancel"
    command_id: str
    device_id: str
    issued_at: float
    expires_at: float


def cancel_order(command_id: str, device_id: str, now: float) -> CancelOrder:
    """An unsigned order to stop `command_id` on `device_id`, valid for CANCEL_TTL_S."""
    return CancelOrder(command_id=command_id, device_id=device_id, issued_at=now,
                       expires_at=now + CANCEL_TTL_S)
