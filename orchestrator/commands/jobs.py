"""Background jobs: a command that returns at once with a job number; the orchestrator waits.

A job is an ordinary command (same checks, audit, signature and record) whose outcome nobody
waits for in a thread: the reaper of any orchestrator process records it as soon as it can be
known (no grace: there is no waiter), and reading the session's jobs (`jobs`, `fg` polling)
records it at once. So a job for an offline device holds nothing but its Redis records until
it expires. A command that sends a file back (`getfile &`) is the exception: its bytes must be
received while they flow, so a receiver thread of a bounded pool waits for it. A job's number
is per session (1, 2, ...), like a shell's. `jobs` lists them, `fg` waits for one, `cancel`
stops one (on the agent too, when it is running).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

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
from tasks.envelope import CommandStatus
from tasks.errors import NotFoundError, UsageError
from tasks.registry import REGISTRY

log = logging.getLogger(__name__)

#: Background file transfers (`getfile &`) received at once by one orchestrator process.
MAX_RUNNING_JOBS = 32


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
            self._pool.submit(self._collect, record)
        # A command held for approval runs when approved: the approver's request waits for it.
        return record

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
        self._pool.shutdown(wait=False, cancel_futures=True)
