"""Collecting a batch's outcomes: what the agents reported, recorded and audited once each.

No thread waits per command. `collect` looks at every command of a batch that has no recorded
outcome yet, in a few round trips: the agent's outcome in the result backend is recorded
(`Dispatcher.finish`: the record, the `command.<status>` entry, the after-effect); a command
no agent started by its expiry is expired (the agent drops it if it ever sees it); one that
started but never answered within its time limit is failed. Whoever claims a command's outcome
first records it (`claim_outcome`), so any number of API processes may collect at once.
`Collector` runs `collect` over every open batch in the background of the API process.
"""

from __future__ import annotations

import logging
import threading

from orchestrator.commands.dispatch import WAIT_GRACE_S, Dispatcher, error_outcome, outcome_of
from orchestrator.commands.records import CommandRecord, claim_outcome, load_records
from orchestrator.fleet.batches import batch_command_ids
from orchestrator.plane import ControlPlane
from tasks import clock
from tasks.envelope import CommandOutcome, CommandStatus
from tasks.registry import REGISTRY
from tasks.replies import as_text

log = logging.getLogger(__name__)

#: Seconds between two background passes over the open batches.
SWEEP_INTERVAL_S = 0.5


def collect(plane: ControlPlane, dispatcher: Dispatcher, batch_id: str) -> int:
    """Record every outcome of the batch that can be known now; how many were recorded."""
    ids = batch_command_ids(plane, batch_id)
    waiting = [r for r in load_records(plane, ids) if not r.outcome_recorded]
    if not waiting:
        plane.client.srem(plane.keys.open_batches, batch_id)
        return 0
    backend = plane.celery.backend
    raw = plane.client.mget([backend.get_key_for_task(r.command_id) for r in waiting])
    recorded = 0
    for record, meta in zip(waiting, raw, strict=True):
        outcome = _outcome(plane, record, backend.decode_result(meta) if meta else None)
        if outcome is not None and claim_outcome(plane, record.command_id):
            dispatcher.finish(record, outcome)
            recorded += 1
    return recorded


def _outcome(plane: ControlPlane, record: CommandRecord,
             meta: dict[str, object] | None) -> CommandOutcome | None:
    """The command's outcome if it can be known now, else None (it is still on its way)."""
    now = clock.now()
    if meta is not None and meta.get("status") in ("SUCCESS", "FAILURE"):
        outcome = outcome_of(record.command_id, meta.get("result"))
        if (outcome.status is not CommandStatus.COMPLETED
                and record.status is CommandStatus.CANCELLED):
            return error_outcome(record, CommandStatus.CANCELLED, "cancelled",
                                 "the command was cancelled while it ran; the agent stopped it")
        return outcome
    status = record.status
    if status is CommandStatus.QUEUED:
        if now <= (record.expires_at or now) + 1.0:
            return None
        moved, _ = plane.states.transition(record.command_id, CommandStatus.EXPIRED,
                                           [CommandStatus.QUEUED],
                                           {"finished_at": repr(now)})
        if not moved:
            return None  # it started just now: the next pass sees it running
        return error_outcome(
            record, CommandStatus.EXPIRED, "expired",
            f"no agent started the command before its expiry; device {record.device_id!r} "
            "may be offline", "check 'lr devices' and that lr-agent runs on the endpoint")
    if status is CommandStatus.RUNNING:
        limit = REGISTRY[record.command].time_limit(plane.settings.command_time_limit_s)
        if now <= (record.started_at or now) + limit + 2 * WAIT_GRACE_S:
            return None
        plane.states.transition(record.command_id, CommandStatus.FAILED, [CommandStatus.RUNNING])
        return error_outcome(record, CommandStatus.FAILED, "agent_silent",
                             "the agent started the command but never answered",
                             "see the agent's log on the endpoint")
    if status is CommandStatus.PENDING_APPROVAL or not status.final:
        return None
    # Ended (cancelled, expired on the agent, ...) with no outcome in the backend: give the
    # agent's own answer a moment to arrive, then record the state as it stands.
    if status is not CommandStatus.CANCELLED and now <= (record.finished_at or now) + WAIT_GRACE_S:
        return None
    return error_outcome(record, status, status.value,
                         f"the command was {status.value} before the agent finished it")


class Collector:
    """A daemon thread collecting every open batch until stopped."""

    def __init__(self, plane: ControlPlane, interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.plane = plane
        self.dispatcher = Dispatcher(plane)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lr-batch-collector",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sweep(self) -> int:
        """One pass over the open batches; how many outcomes were recorded."""
        total = 0
        for raw in self.plane.client.smembers(self.plane.keys.open_batches):
            total += collect(self.plane, self.dispatcher, as_text(raw))
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # a failed pass is retried at the next; never kill the thread
                log.exception("batch collection failed; retrying")
