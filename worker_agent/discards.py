"""What Celery itself drops before the executor runs, recorded in the audit stream.

A task whose message `expires` has passed, one revoked, one under a task name the agent does
not know, one Celery cannot decode or refuses: Celery discards each with a line in the log at
most. These handlers only record (they decide nothing: Celery has already dropped the task).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps, signals

from tasks.registry import TASK_PREFIX
from worker_agent.refusals import AgentAudit, clip
from worker_agent.runtime import runtime_of

log = logging.getLogger(__name__)


def connect_discard_audit(app: Celery, audit: AgentAudit) -> None:
    """Audit what Celery drops for `app`'s worker (signals from other apps are ignored)."""

    def on_revoked(sender: Any = None, request: Any = None, terminated: bool = False,
                   expired: bool = False, **_: Any) -> None:
        if getattr(sender, "app", None) is not app or terminated:
            return  # a termination is the signed cancel's, which audits it itself
        task_id, name = clip(getattr(request, "id", "")), clip(getattr(request, "task", ""))
        if expired:
            audit.rejected("celery_expired", "Celery dropped the task: its message expired "
                           "before the agent received it", expired=True,
                           command_id=task_id, command=_command_of(name), task=name)
        else:
            audit.rejected("celery_revoked", "Celery dropped the task: it was revoked",
                           command_id=task_id, command=_command_of(name), task=name)

    def on_unknown(sender: Any = None, name: Any = None, id: Any = None,  # noqa: A002
                   **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        audit.rejected("unregistered_task",
                       f"Celery dropped a task under a name this agent does not run: "
                       f"{clip(name)!r}", command_id=clip(id), task=clip(name))

    def on_rejected(sender: Any = None, message: Any = None, exc: Any = None,
                    **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        record_undecodable(audit, message, exc)

    for signal, handler in ((signals.task_revoked, on_revoked),
                            (signals.task_unknown, on_unknown),
                            (signals.task_rejected, on_rejected)):
        signal.connect(handler, weak=False)


def record_undecodable(audit: AgentAudit, message: Any, exc: BaseException | None) -> None:
    """Audit a task message Celery could not decode or would not accept (never its body)."""
    headers = getattr(message, "headers", None)
    headers = headers if isinstance(headers, dict) else {}
    name = clip(headers.get("task", ""))
    what = type(exc).__name__ if exc is not None else "not a task message"
    audit.rejected("undecodable", f"Celery dropped a message it could not accept ({what})",
                   command_id=clip(headers.get("id", "")), task=name)


class UndecodableAuditStep(bootsteps.StartStopStep):
    """Consumer step: a message that fails to decode is audited and dropped, never fatal.

    Celery sends no signal when a body fails to decode, and the Redis transport does not catch
    a queue item that is not a message at all: one such item pushed onto the queue would stop
    the worker. This wraps the callbacks of this one consumer and its channel (not the classes).
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        original = c.on_decode_error
        audit = runtime_of(c.app).audit

        def on_decode_error(message: Any, exc: BaseException) -> None:
            record_undecodable(audit, message, exc)
            original(message, exc)

        c.on_decode_error = on_decode_error

    def start(self, c: Any) -> None:
        # The task consumer (and its channel) is made anew on every connection.
        handlers = getattr(getattr(c.task_consumer, "channel", None), "handlers", None)
        if not isinstance(handlers, dict):
            return  # not the Redis transport: nothing to guard
        read = handlers.get("BRPOP")
        if read is None or getattr(read, "lr_guarded", False):
            return
        audit = runtime_of(c.app).audit

        def guarded_read(**options: Any) -> Any:
            try:
                return read(**options)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # The item is already off the queue; it was no message Celery could take.
                log.error("dropped a queue item that is not a task message: %r", exc)
                record_undecodable(audit, None, exc)
                return True

        guarded_read.lr_guarded = True  # type: ignore[attr-defined]
        handlers["BRPOP"] = guarded_read


def _command_of(task_name: str) -> str:
    return task_name[len(TASK_PREFIX):] if task_name.startswith(TASK_PREFIX) else ""
