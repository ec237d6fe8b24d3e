"""The reaper: every command ends with a recorded, audited outcome, whoever was waiting died.

A command's outcome is recorded by whoever claims it first (`Dispatcher.finish`): the request
waiting for it, a background job's thread, or the reaper of any orchestrator process. The
reaper sweeps `Keys.open_commands` (the commands with no recorded outcome) in a few round
trips per pass and records what can be known now:
- the agent's outcome in the result backend;
- `expired`: no agent started the command by its expiry (the agent drops it if it sees it);
- `failed` (`agent_silent`): it started and never answered within its time limit.
A command someone is waiting for gets `REAP_GRACE_S` more before the reaper steps in (its
waiter records it sooner); one nobody waits for (a batch's, a background job's) is recorded
at once. A `getfile`
whose receiver died is failed (`transfer_lost`), audited as `evidence.failed`, and its temp
file and stream are removed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from orchestrator.commands.dispatch import WAIT_GRACE_S, Dispatcher, error_outcome, outcome_of
from orchestrator.commands.records import CommandRecord, load_records
from orchestrator.files.evidence import EvidenceStore
from orchestrator.plane import ControlPlane
from tasks import clock
from tasks.envelope import CommandOutcome, CommandStatus, ErrorInfo
from tasks.errors import TransferError
from tasks.registry import REGISTRY
from tasks.replies import as_text

log = logging.getLogger(__name__)

#: Seconds the reaper leaves a watched command to its waiter past the moment it could act.
REAP_GRACE_S = 10.0
#: Seconds between two passes of the background reaper.
SWEEP_INTERVAL_S = 2.0
#: Commands looked at per round trip of a pass.
SWEEP_CHUNK = 500


def watched(record: CommandRecord) -> bool:
    """Whether someone waits for the command's outcome in a thread: a request (`lr run`), or
    the receiver of a file it sends back. Nobody does for a job or a batch's command."""
    if record.batch_id:
        return False
    return record.job is None or REGISTRY[record.command].sends_file


def collect(plane: ControlPlane, dispatcher: Dispatcher, records: Iterable[CommandRecord],
            grace_s: float) -> int:
    """Record every outcome of `records` that can be known now; how many were recorded."""
    waiting = [r for r in records if not r.outcome_recorded]
    if not waiting:
        return 0
    backend = plane.celery.backend
    raw = plane.client.mget([backend.get_key_for_task(r.command_id) for r in waiting])
    recorded = 0
    for record, meta in zip(waiting, raw, strict=True):
        outcome = outcome_now(plane, record, backend.decode_result(meta) if meta else None,
                              grace_s)
        if outcome is None:
            continue
        if REGISTRY[record.command].sends_file and grace_s > 0:
            outcome = _transfer_lost(plane, record, outcome)
        done = dispatcher.finish(record, outcome)
        recorded += int(done.outcome_recorded)
    return recorded


def outcome_now(plane: ControlPlane, record: CommandRecord, meta: dict[str, object] | None,
                grace_s: float) -> CommandOutcome | None:
    """The command's outcome if it can be known now (`grace_s` after a waiter would have
    known it), else None: it is still on its way, or held for approval."""
    now = clock.now()
    if meta is not None and meta.get("status") in ("SUCCESS", "FAILURE"):
        outcome = outcome_of(record.command_id, meta.get("result"))
        if now <= (outcome.finished_at or record.finished_at or now) + grace_s:
            return None
        if (outcome.status is not CommandStatus.COMPLETED
                and record.status is CommandStatus.CANCELLED):
            return error_outcome(record, CommandStatus.CANCELLED, "cancelled",
                                 "the command was cancelled while it ran; the agent stopped it")
        return outcome
    status = record.status
    if status is CommandStatus.QUEUED:
        if now <= (record.expires_at or now) + 1.0 + grace_s:
            return None
        moved, _ = plane.states.transition(record.command_id, CommandStatus.EXPIRED,
                                           [CommandStatus.QUEUED], {"finished_at": repr(now)})
        if not moved:
            return None  # it started just now: the next pass sees it running
        return error_outcome(
            record, CommandStatus.EXPIRED, "expired",
            f"no agent started the command before its expiry; device {record.device_id!r} "
            "may be offline", "check 'lr devices' and that lr-agent runs on the endpoint")
    if status is CommandStatus.RUNNING:
        limit = REGISTRY[record.command].time_limit(plane.settings.command_time_limit_s)
        if now <= (record.started_at or now) + limit + 2 * WAIT_GRACE_S + grace_s:
            return None
        plane.states.transition(record.command_id, CommandStatus.FAILED, [CommandStatus.RUNNING])
        return error_outcome(record, CommandStatus.FAILED, "agent_silent",
                             "the agent started the command but never answered",
                             "see the agent's log on the endpoint")
    if status is CommandStatus.PENDING_APPROVAL or not status.final:
        return None
    # Ended (cancelled, expired on the agent, ...) with no outcome in the backend: give the
    # agent's own answer a moment to arrive, then record the state as it stands.
    if (status is not CommandStatus.CANCELLED
            and now <= (record.finished_at or now) + WAIT_GRACE_S + grace_s):
        return None
    return error_outcome(record, status, status.value,
                         f"the command was {status.value} before the agent finished it")


def _transfer_lost(plane: ControlPlane, record: CommandRecord,
                   outcome: CommandOutcome) -> CommandOutcome:
    """A file the agent sent whose receiver is gone: nothing was kept; say so and clean up."""
    store = EvidenceStore(plane.settings.evidence_path(), plane.client, plane.keys)
    temp = store.temp_dir / f"{record.command_id}.part"
    left = temp.exists()
    temp.unlink(missing_ok=True)
    plane.client.delete(plane.keys.xfer(record.command_id))
    if outcome.result is not None and outcome.result.get("evidence_sha256"):
        return outcome
    error = ErrorInfo(code=TransferError.code,
                      message="the orchestrator receiving the file stopped before the "
                              "transfer ended; nothing was kept",
                      hint="run getfile again")
    plane.audit.append(record.user, "evidence.failed", record.device_id, "failed",
                       session=record.session_id or None, device=record.device_id,
                       command_id=record.command_id, reason="transfer_lost",
                       temp_file_removed=left)
    return outcome.model_copy(update={"status": CommandStatus.FAILED, "result": None,
                                      "error": error})


class Reaper:
    """A daemon thread sweeping the open commands until stopped."""

    def __init__(self, plane: ControlPlane, interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.plane = plane
        self.dispatcher = Dispatcher(plane)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lr-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sweep(self) -> int:
        """One pass over the open commands; how many outcomes were recorded."""
        p = self.plane
        ids = [as_text(i) for i in p.client.smembers(p.keys.open_commands)]
        total = 0
        for start in range(0, len(ids), SWEEP_CHUNK):
            chunk = ids[start:start + SWEEP_CHUNK]
            records = load_records(p, chunk)
            known = {r.command_id for r in records}
            gone = [i for i in chunk if i not in known]
            done = [r.command_id for r in records if r.outcome_recorded]
            if gone or done:  # records expired, or recorded by a process that died after
                p.client.srem(p.keys.open_commands, *gone, *done)
            for record in records:
                grace = REAP_GRACE_S if watched(record) else 0.0
                total += collect(p, self.dispatcher, [record], grace)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # a failed pass is retried at the next; never kill the thread
                log.exception("reaping commands failed; retrying")
