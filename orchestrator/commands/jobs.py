"""Background jobs: a command that returns at once with a job number; the orchestrator waits.

A job is an ordinary command (same checks, audit, signature and record) whose outcome nobody
waits for in a thread: the reaper of any orchestrator process records it as soon as it can be
known (no grace: there is no waiter), and reading the session's jobs (`jobs`, `fg` polling)
records it at once. So a job for an offline device holds nothing but its Redis records until
it expires. A command that sends a file back (`getfile &`) needs more: its bytes must be received
while they flow, by a receiver thread of a bounded pool; it gets one only once its agent started
it (one watcher thread looks at the states of those not started yet), so transfers queued for
offline devices never take the threads of those that run. A job's number
is per session (1, 2, ...), like a shell's. `jobs` lists them, `fg` waits for one, `cancel`
stops one (on the agent too, when it is running).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import redis

from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.reaper import collect, watched
from orchestrator.commands.records import (
    CommandRecord,
    load_records,
    session_records,
    stage_fields,
)
from orchestrator.policies.checks import cancel_job
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import User
from tasks import clock
from tasks.envelope import CommandStatus
from tasks.errors import NotFoundError, UsageError
from tasks.registry import REGISTRY

log = logging.getLogger(__name__)

#: Background file transfers (`getfile &`) received at once by one orchestrator process.
MAX_RUNNING_JOBS = 32
#: Seconds between two looks at the background transfers no agent has started yet (the agent
#: sends its first chunks meanwhile; they wait in the stream for the receiver).
TRANSFER_POLL_S = 0.2


def check_job_line(line: str) -> None:
    """A background line must say what to run."""
    if not line.strip():
        raise UsageError("empty command line", hint="e.g. 'getfile /var/log/auth.log &'")


def split_background(line: str) -> tuple[str, bool]:
    """(`line` without a trailing `&`, whether it had one): `dir /tmp &` runs in the background."""
    stripped = line.rstrip()
    if stripped.endswith("&") and not stripped.endswith("\\&"):
        return stripped[:-1].rstrip(), True
    return line, False


class Jobs:
    """Starts, lists, waits for and cancels a session's background commands."""

    def __init__(self, dispatcher: Dispatcher, workers: int = MAX_RUNNING_JOBS) -> None:
        self.dispatcher = dispatcher
        self.plane = dispatcher.plane
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lr-job")
        #: Background transfers not started yet, by command id, and the thread watching them.
        self._unstarted: dict[str, CommandRecord] = {}
        self._changed = threading.Condition()
        self._watcher: threading.Thread | None = None
        self._stopped = False

    def start(self, user: User, session_id: str, line: str, *,
              expires_s: float | None = None) -> CommandRecord:
        """Submit `line` (every check applies) and collect its outcome in the background."""
        check_job_line(line)
        return self.adopt(self.dispatcher.submit(user, session_id, line, expires_s=expires_s))

    def adopt(self, record: CommandRecord) -> CommandRecord:
        """Make a command just submitted the next job of its session."""
        p = self.plane
        job = int(p.client.incr(p.keys.session_jobs(record.session_id)))
        stage_fields(p.client, p, record.command_id, job=job)
        record = record.model_copy(update={"job": job})
        if record.status is CommandStatus.QUEUED and REGISTRY[record.command].sends_file:
            self._receive_once_started(record)
        # A command held for approval runs when approved: the approver's request waits for it.
        return record

    def _receive_once_started(self, record: CommandRecord) -> None:
        """Give the transfer a receiver thread once its agent starts it (or it can no longer
        start: cancelled, expired); until then the watcher thread looks at its state."""
        with self._changed:
            self._unstarted[record.command_id] = record
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="lr-job-transfers",
                                                 daemon=True)
                self._watcher.start()
            self._changed.notify()

    def _watch(self) -> None:
        while True:
            with self._changed:
                while not self._unstarted and not self._stopped:
                    self._changed.wait()
                if self._stopped:
                    return
                unstarted = list(self._unstarted.values())
            try:
                ready = self._started(unstarted)
            except redis.RedisError as exc:  # looked at again at the next turn
                log.warning("could not read the state of background transfers: %s", exc)
                ready = []
            with self._changed:
                for record in ready:
                    del self._unstarted[record.command_id]
            for record in ready:
                self._pool.submit(self._collect, record)
            with self._changed:
                if not self._stopped:
                    self._changed.wait(TRANSFER_POLL_S)

    def _started(self, records: list[CommandRecord]) -> list[CommandRecord]:
        """Those of `records` no longer queued (started, or ended) or past their expiry."""
        states = self.plane.states.states([r.command_id for r in records])
        now = clock.now()
        return [record for record, state in zip(records, states, strict=True)
                if state is not CommandStatus.QUEUED or now >= (record.expires_at or now)]

    def _collect(self, record: CommandRecord) -> None:
        try:
            self.dispatcher.wait(record)
        except Exception:  # a job's failure is recorded by wait; a crash must still be logged
            log.exception("collecting job %s (%s) failed", record.job, record.command_id)

    def list(self, session_id: str) -> list[CommandRecord]:
        """The session's jobs, oldest first; every outcome that can be known now recorded."""
        self.plane.sessions.get(session_id)
        jobs = [r for r in session_records(self.plane, session_id) if r.job is not None]
        unwatched = [r for r in jobs if not watched(r)]
        if unwatched and collect(self.plane, self.dispatcher, unwatched, grace_s=0.0):
            fresh = {r.command_id: r for r in load_records(
                self.plane, [r.command_id for r in unwatched])}
            jobs = [fresh.get(r.command_id, r) for r in jobs]
        return jobs

    def get(self, session_id: str, job: int) -> CommandRecord:
        """Job number `job` of the session (NotFoundError when there is none)."""
        for record in self.list(session_id):
            if record.job == job:
                return record
        raise NotFoundError(f"session {session_id} has no job {job}",
                            hint=f"list them with `lr jobs {session_id}`")

    def cancel(self, user: User, session_id: str, job: int) -> CommandRecord:
        """Stop a job: the session's owner (or an admin) holding every permission the
        command itself needed on its device."""

        def stop(req: Request) -> CommandRecord:
            assert req.record is not None
            record = req.record
            if not self.dispatcher.cancel(user, record.command_id, session_id,
                                          f"job {job} cancelled"):
                raise UsageError(f"job {job} already ended ({record.status.value})",
                                 hint=f"see its result with `lr fg {session_id} {job}`")
            return self.dispatcher.get(record.command_id)

        req = Request(self.plane, target=session_id, user=user, session_id=session_id,
                      details={"job": job})
        return cancel_job(job).run(req, stop)

    def shutdown(self) -> None:
        """Stop collecting (the commands themselves go on; their results stay retrievable)."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._pool.shutdown(wait=False, cancel_futures=True)
