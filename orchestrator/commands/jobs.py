"""Background jobs: a command that returns at once with a job number; the orchestrator waits.

A job is an ordinary command (same checks, audit, signature and record) whose outcome the
orchestrator collects in a worker thread instead of the analyst's request. Its number is
per session (1, 2, ...), like a shell's. `jobs` lists them, `fg` waits for one, `cancel`
stops one (on the agent too, when it is running).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.records import CommandRecord, session_records, stage_fields
from orchestrator.policies.checks import cancel_job
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import User
from tasks.envelope import CommandStatus
from tasks.errors import NotFoundError, UsageError

log = logging.getLogger(__name__)

#: Background commands collected at once by one orchestrator process.
MAX_RUNNING_JOBS = 32


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
        if not line.strip():
            raise UsageError("empty command line", hint="e.g. 'getfile /var/log/auth.log &'")
        record = self.dispatcher.submit(user, session_id, line, expires_s=expires_s)
        p = self.plane
        job = int(p.client.incr(p.keys.session_jobs(session_id)))
        stage_fields(p.client, p, record.command_id, job=job)
        record = record.model_copy(update={"job": job})
        if record.status is CommandStatus.QUEUED:
            self._pool.submit(self._collect, record)
        # A command held for approval runs when approved: the approver's request waits for it.
        return record

    def _collect(self, record: CommandRecord) -> None:
        try:
            self.dispatcher.wait(record)
        except Exception:  # a job's failure is recorded by wait; a crash must still be logged
            log.exception("collecting job %s (%s) failed", record.job, record.command_id)

    def list(self, session_id: str) -> list[CommandRecord]:
        """The session's jobs, oldest first."""
        self.plane.sessions.get(session_id)
        return [r for r in session_records(self.plane, session_id) if r.job is not None]

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
