"""Celery remote control on an agent: read-only inspection answered, a signed cancel obeyed,
everything else refused and audited.

Anyone who can write to the broker can broadcast a control command (`celery control shutdown`,
`pool_restart`, `revoke`, ...). Celery's worker hands its pidbox node the global table of every
command it knows; the agent's app uses a node class of its own (`AgentNode`, set on that app's
mailbox only) whose table holds what is listed here and nothing else.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from celery.worker import control as celery_control
from celery.worker import state as worker_state
from kombu.pidbox import Node
from pydantic import ValidationError

from tasks import clock
from tasks.cancel import CANCEL_CONTROL, CancelOrder
from tasks.errors import SignatureError
from worker_agent.refusals import clip
from worker_agent.runtime import AgentRuntime, runtime_of

log = logging.getLogger(__name__)

#: Reason code of a refused remote control command.
REMOTE_CONTROL_REFUSED = "remote_control"

ControlHandler = Callable[..., Any]


def _active(state: Any, **_: Any) -> Any:
    # Arguments as the task's argsrepr (the command's name and id), as Flower shows them.
    return celery_control.active(state, safe=True)


def _reserved(state: Any, **_: Any) -> list[dict[str, Any]]:
    waiting = state.tset(worker_state.reserved_requests) - state.tset(
        worker_state.active_requests)
    return [request.info(safe=True) for request in waiting]


def _scheduled(state: Any, **_: Any) -> list[dict[str, Any]]:
    return [{**entry, "request": _safe_info(entry["request"])}
            for entry in celery_control.scheduled(state)]


def _query_task(state: Any, ids: Any = None, **_: Any) -> dict[str, Any]:
    return {task_id: (where, _safe_info(info))
            for task_id, (where, info) in celery_control.query_task(state, ids or []).items()}


def _safe_info(info: dict[str, Any]) -> dict[str, Any]:
    request = worker_state.requests.get(info.get("id"))
    return request.info(safe=True) if request is not None else {**info, "args": "", "kwargs": ""}


def _lr_cancel(state: Any, order: Any = None, **_: Any) -> dict[str, str]:
    """Stop a running command on the orchestrator's signed order; refuse any other."""
    rt = runtime_of(state.app)
    try:
        parsed = CancelOrder.model_validate(order)
    except ValidationError:
        command_id = clip(order.get("command_id") if isinstance(order, dict) else "")
        return _refuse_cancel(rt, "malformed_cancel", "the cancel order is malformed",
                              command_id, None)
    refusal = check_cancel(rt, parsed, clock.now())
    if refusal is not None:
        return _refuse_cancel(rt, *refusal, parsed.command_id, parsed.key_id)
    terminated = _terminate(state, parsed.command_id)
    rt.audit.record("agent.cancelled", parsed.command_id, "cancelled",
                    command_id=parsed.command_id, command=CANCEL_CONTROL,
                    terminated=terminated, key_id=parsed.key_id)
    return {"ok": f"{parsed.command_id}: {'terminated' if terminated else 'not running here'}"}


def check_cancel(rt: AgentRuntime, order: CancelOrder, now: float) -> tuple[str, str] | None:
    """Why this agent must not obey `order` (reason code, message), or None.

    The same checks, in the same order, as for a command envelope: signature first.
    """
    try:
        rt.verifier.verify(order)
    except SignatureError as exc:
        return exc.code, exc.message
    if order.device_id != rt.device_id:
        return ("wrong_device",
                f"addressed to device {order.device_id!r}, this is {rt.device_id!r}")
    if now > order.expires_at:
        return "expired", "the cancel order expired before it arrived"
    if max(order.expires_at - now, order.expires_at - order.issued_at) > rt.max_lifetime_s:
        return ("expiry_too_far",
                f"the cancel order is valid for longer than {rt.max_lifetime_s:g} s")
    return None


def _refuse_cancel(rt: AgentRuntime, code: str, message: str, command_id: str,
                   key_id: str | None) -> dict[str, str]:
    log.warning("refused a cancel order for %s: %s", command_id, message)
    rt.audit.rejected(code, message, command_id=command_id, command=CANCEL_CONTROL,
                      key_id=key_id)
    return {"error": message}


def _terminate(state: Any, command_id: str) -> bool:
    """What Celery's own revoke(terminate=True) does for one task id; True if it was here."""
    request = worker_state.requests.get(command_id)
    if request is None:
        return False
    # A request not started yet is skipped when its turn comes, as with a revoke.
    worker_state.revoked.add(command_id)
    log.info("terminating %s on the orchestrator's signed cancel", command_id)
    watchdog = runtime_of(state.app).watchdog
    if watchdog is not None:
        # Threads pool: CommandCancelled in the command's thread, its processes stopped; one
        # about to start is cancelled as it starts (Celery's pool cannot terminate a thread).
        watchdog.cancel(command_id)
    else:
        request.terminate(state.consumer.pool, signal=signal.SIGTERM)
    return True


#: The commands an agent's node answers: inspection that only reads, handled by Celery itself
#: (task listings show arguments as argsrepr), and the signed cancel. `conf` and `report` are
#: left out because they dump the configuration, everything that changes the worker because
#: anyone who can write to the broker can send it.
AGENT_PANEL: dict[str, ControlHandler] = {
    "ping": celery_control.ping,
    "stats": celery_control.stats,
    "active": _active,
    "reserved": _reserved,
    "scheduled": _scheduled,
    "registered": celery_control.registered,
    "active_queues": celery_control.active_queues,
    "revoked": celery_control.revoked,
    "query_task": _query_task,
    "clock": celery_control.clock,
    # Sends one worker-heartbeat event now; Flower and `celery events` ask it when they start.
    "heartbeat": celery_control.heartbeat,
    CANCEL_CONTROL: _lr_cancel,
}


def refuse_control(state: Any, method: object) -> dict[str, str]:
    """Answer and audit a control command the agent does not obey (never its arguments)."""
    name = clip(method)
    message = f"liveresponse agents obey no remote control {name!r}"
    log.warning("refused remote control %r", name)
    runtime_of(state.app).audit.rejected(REMOTE_CONTROL_REFUSED, message, method=name)
    return {"error": message}


class AgentNode(Node):
    """A pidbox node that answers AGENT_PANEL only; any other method is refused and audited."""

    def __init__(self, hostname: str | None = None, state: Any = None, channel: Any = None,
                 handlers: Any = None, mailbox: Any = None) -> None:
        # Celery passes its global table of commands; the agent's node keeps its own.
        self.panel: dict[str, ControlHandler] = dict(AGENT_PANEL)
        super().__init__(hostname, state, channel, self.panel, mailbox)

    def handle(self, method: Any, arguments: Any = None) -> Any:
        handler = self.panel.get(method) if isinstance(method, str) else None
        if handler is None:
            return refuse_control(self.state, method)
        return handler(self.state, **(arguments or {}))
