"""The orchestrator worker: a Celery worker on the orchestrator's host that executes runs.

It consumes only its own queue (`lr.orchestrator`), never a device's; it holds the
orchestrator's signing key and checks every order with it before anything runs. A run is
executed under a lease in Redis that the worker renews; when a worker dies (even SIGKILL)
its lease lapses and a sweep on any live worker sends the run's signed order again, so it
resumes where it was, without sending a completed step's command again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

from celery import Celery

from orchestrator.plane import ControlPlane
from orchestrator.playbooks.engine import WORKER_ACTOR, RunEngine, load_ordered_playbook
from orchestrator.playbooks.orders import (
    RUN_TASK,
    RunOrder,
    claimed_user,
    orchestrator_queue,
    verify_order,
)
from orchestrator.playbooks.runs import RunStatus, RunStore
from orchestrator.playbooks.sent import SentSteps, sent_path
from tasks import clock
from tasks.app import make_celery_app
from tasks.errors import LiveResponseError

log = logging.getLogger(__name__)

#: Runs one worker process executes at once (each mostly waits on its agent).
DEFAULT_CONCURRENCY = 4


class RunWorker:
    """Verifies orders, executes runs under a lease, and sweeps for runs whose worker died."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.store = RunStore(plane.client, plane.keys)
        self.lease_s = plane.settings.playbook_lease_s
        self.holder_prefix = f"{socket.gethostname()}:{os.getpid()}"
        self.sent = SentSteps(sent_path(plane.settings))
        self._stop = threading.Event()
        self._resent: dict[str, float] = {}

    def handle(self, raw: Any) -> str:
        """One task message: refuse (and audit) what the orchestrator did not sign; else run."""
        try:
            order = verify_order(self.plane, raw)
            playbook = load_ordered_playbook(self.plane, order)
        except LiveResponseError as exc:
            log.warning("refused a playbook order: %s", exc.message)
            run_id = raw.get("run_id") if isinstance(raw, dict) else None
            self.plane.audit.append(
                claimed_user(raw) or WORKER_ACTOR, "playbook.order_refused",
                str(run_id)[:64] if run_id else "playbook", "denied",
                run=str(run_id)[:64] if run_id else None, reason=exc.code, message=exc.message)
            return "refused"
        holder = f"{self.holder_prefix}:{uuid.uuid4().hex[:8]}"
        if not self.store.take_lease(order.run_id, holder, self.lease_s):
            log.info("run %s is executed by another worker", order.run_id)
            return "leased elsewhere"
        renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(order, holder, renewing),
                                   name=f"lease-{order.run_id}", daemon=True)
        renewer.start()
        try:
            return RunEngine(self.plane, order, playbook, self.sent).execute().status.value
        finally:
            renewing.set()
            renewer.join(timeout=5)
            self.store.release_lease(order.run_id, holder)

    def _renew(self, order: RunOrder, holder: str, done: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            try:
                if not self.store.renew_lease(order.run_id, holder, self.lease_s):
                    log.warning("lost the lease of run %s", order.run_id)
            except Exception:  # a Redis hiccup: the next renewal may make it
                log.exception("renewing the lease of run %s failed", order.run_id)

    def sweep(self) -> list[str]:
        """Send again the orders of started runs that no live worker holds; their ids."""
        sent = []
        now = clock.now()
        for run in self.store.list():
            started = run.status in (RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)
            stale_queued = (run.status is RunStatus.QUEUED
                            and now - run.created_at > 4 * self.lease_s)
            if not (started or stale_queued) or self.store.leased(run.run_id):
                continue
            if now - self._resent.get(run.run_id, 0.0) < 4 * self.lease_s:
                continue
            if float(run.order.get("expires_at") or 0) < now:
                continue  # the worker would refuse it: nothing can resume it any more
            self._resent[run.run_id] = now
            self.plane.celery.send_task(RUN_TASK, args=[run.order],
                                        task_id=f"playbook-{run.run_id}-{int(now)}",
                                        queue=orchestrator_queue(self.plane.keys.prefix),
                                        argsrepr=f"<run {run.run_id}>", kwargsrepr="{}")
            sent.append(run.run_id)
        return sent

    def sweep_forever(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                for run_id in self.sweep():
                    log.info("run %s had no live worker: its order is sent again", run_id)
            except Exception:
                log.exception("the sweep for abandoned runs failed")

    def stop(self) -> None:
        self._stop.set()


def build_worker_app(plane: ControlPlane, worker: RunWorker) -> Celery:
    """A Celery app whose one task is a playbook run, consuming the orchestrator queue."""
    assert plane.settings.redis_url is not None
    app = make_celery_app(plane.settings.redis_url, name="lr-orchestrator-worker")
    # A Redis writer must not steer this worker (add_consumer to a device queue, shutdown...).
    app.conf.worker_enable_remote_control = False

    def run_playbook(order: Any) -> str:
        return worker.handle(order)

    app.task(name=RUN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True
             )(run_playbook)
    return app


def run_worker(plane: ControlPlane, concurrency: int = DEFAULT_CONCURRENCY,
               loglevel: str = "INFO") -> None:
    """Consume the orchestrator queue until interrupted (the sweep runs beside it)."""
    worker = RunWorker(plane)
    app = build_worker_app(plane, worker)
    sweeper = threading.Thread(target=worker.sweep_forever, name="run-sweep", daemon=True)
    sweeper.start()
    try:
        app.Worker(
            queues=[orchestrator_queue(plane.keys.prefix)], pool="threads",
            concurrency=concurrency, loglevel=loglevel,
            hostname=f"lr-orchestrator@{socket.gethostname()}",
            without_gossip=True, without_mingle=True, without_heartbeat=True,
        ).start()
    finally:
        worker.stop()
        app.close()
