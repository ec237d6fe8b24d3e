"""Build an agent's Celery app: one task per registry command, all run by the one executor."""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery, bootsteps, states
from celery.exceptions import Ignore

from config import Settings
from tasks.app import make_celery_app
from tasks.auditchain import AuditChain
from tasks.keys import Keys
from tasks.queues import validate_device_id
from tasks.registry import REGISTRY, CommandSpec, Registry
from tasks.signing import Verifier
from worker_agent.discards import UndecodableAuditStep, connect_discard_audit
from worker_agent.events import use_content_free_events
from worker_agent.executor import Executor, is_replay_refusal
from worker_agent.handlers import HandlerTable
from worker_agent.isolation import broker_endpoints, isolation_table_state
from worker_agent.ledger import Ledger
from worker_agent.lifetime import tie_pool_processes
from worker_agent.quiet_log import HideTaskResultsStep
from worker_agent.refusals import AgentAudit
from worker_agent.registration import beat, mark_stopped, register_device
from worker_agent.remote_control import AgentNode
from worker_agent.runtime import AgentRuntime, runtime_of
from worker_agent.watchdog import CommandAbandoned, CommandCancelled, Watchdog

log = logging.getLogger(__name__)

#: Characters of a command's result Celery may render for its log line and event: none.
RESULT_REPR_CHARS = 0
#: Seconds between the soft time limit (the command is told to stop) and the hard one (its
#: process killed in the prefork pool; its thread abandoned, the outcome recorded, in threads).
HARD_LIMIT_GRACE_S = 5.0


class HeartbeatStep(bootsteps.StartStopStep):
    """Register the device when the worker starts and refresh `last_seen` on a timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        rt = runtime_of(worker.app)
        register_device(rt.client, rt.keys, rt.device_id)
        self.tref = worker.timer.call_repeatedly(rt.heartbeat_interval_s, self._beat, (rt,))

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        rt = runtime_of(worker.app)
        try:
            mark_stopped(rt.client, rt.keys, rt.device_id)
        except redis.RedisError:
            log.warning("could not mark device %s stopped", rt.device_id)

    @staticmethod
    def _beat(rt: AgentRuntime) -> None:
        try:
            beat(rt.client, rt.keys, rt.device_id, check_isolation=isolation_table_state)
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)


def build_agent_app(device_id: str, settings: Settings, registry: Registry = REGISTRY) -> Celery:
    """A Celery app whose tasks are this device's commands, ready for `worker_main`."""
    validate_device_id(device_id)
    if not settings.redis_url:
        raise ValueError("the agent needs LR_REDIS_URL: the broker its orchestrator uses")
    # Before anything connects: an agent that cannot check signatures must not consume.
    verifier = Verifier.from_file(settings.orchestrator_public_key_path())
    # Nor one whose ledger cannot be written: it could not tell a replay from a first run.
    ledger = Ledger(settings.ledger_path(device_id))
    ledger.check()
    app = make_celery_app(settings.redis_url, name=f"lr-agent-{device_id}")
    # Task events reach Flower and anyone on the broker: state only, never results.
    use_content_free_events(app)
    client = redis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.key_prefix)
    audit = AgentAudit(device_id, AuditChain(client, keys))
    executor = Executor(
        device_id=device_id, client=client, keys=keys, registry=registry,
        handlers=HandlerTable(registry), output_max_bytes=settings.output_max_bytes,
        agent_pid=os.getpid(), verifier=verifier, ledger=ledger, audit=audit,
        broker_endpoints=broker_endpoints(settings.redis_url),
        settings=settings,
    )
    # Prefork enforces time limits itself and kills a cancelled command's process; in the
    # threads pool the watchdog does both.
    watchdog = Watchdog() if settings.agent_pool == "threads" else None
    for spec in registry.values():
        _register_task(app, spec, executor, spec.time_limit(settings.command_time_limit_s),
                       watchdog)
    app.lr_agent = AgentRuntime(  # type: ignore[attr-defined]
        device_id, client, keys, settings.heartbeat_interval_s, verifier=verifier, audit=audit,
        max_lifetime_s=settings.envelope_max_lifetime_s, watchdog=watchdog)
    # This app's mailbox only: its worker's pidbox node answers read-only inspection and the
    # signed cancel, and refuses (and audits) every other remote control command.
    app.control.mailbox.node_cls = AgentNode
    connect_discard_audit(app, audit)
    if watchdog is None:
        tie_pool_processes(os.getpid())
    app.steps["worker"].update({HeartbeatStep, HideTaskResultsStep})
    app.steps["consumer"].add(UndecodableAuditStep)
    return app


def _register_task(app: Celery, spec: CommandSpec, executor: Executor, limit_s: float,
                   watchdog: Watchdog | None) -> None:
    def run(task: Any, envelope: dict[str, Any]) -> dict[str, Any]:
        task_id = task.request.id
        if watchdog is None:
            outcome = executor.execute(spec, envelope, task_id=task_id)
        else:
            outcome = _run_in_thread(watchdog, task, spec, executor, limit_s, envelope)
        if is_replay_refusal(outcome):
            # The command's result belongs to its first run (under way, cut short or ended):
            # a second delivery is refused and audited, and must not answer in its place.
            raise Ignore()
        return outcome

    run.__name__ = f"command_{spec.name}"
    # The limits are Celery's in the prefork pool; the threads pool ignores them (the
    # watchdog enforces the same ones).
    app.task(
        name=spec.task_name,
        soft_time_limit=limit_s,
        time_limit=limit_s + HARD_LIMIT_GRACE_S,
        acks_late=False,
        ignore_result=False,
        # Celery renders a repr of every return value for its success log line and event;
        # the agent drops both (`quiet_log`, `events`), and for a large listing the repr
        # cost more than the command: render none.
        resultrepr_maxsize=RESULT_REPR_CHARS,
        bind=True,
    )(run)


def _run_in_thread(watchdog: Watchdog, task: Any, spec: CommandSpec, executor: Executor,
                   limit_s: float, envelope: dict[str, Any]) -> dict[str, Any]:
    """Execute the task in this pool thread under the watchdog's limits and cancel."""
    task_id = task.request.id
    backend = task.backend

    def timed_out() -> None:
        # In the watchdog's thread: the command is recorded as timed out, and its own
        # outcome, should its thread ever return, is dropped (CommandAbandoned below).
        backend.store_result(task_id, executor.abandon(spec, envelope), states.SUCCESS)

    try:
        return watchdog.run(task_id, limit_s, HARD_LIMIT_GRACE_S,
                            lambda: executor.execute(spec, envelope, task_id=task_id),
                            timed_out)
    except CommandCancelled:
        # What prefork's terminate leaves: the task revoked in the result backend.
        backend.mark_as_revoked(task_id, "terminated", request=task.request)
        raise Ignore() from None
    except CommandAbandoned:
        raise Ignore() from None
