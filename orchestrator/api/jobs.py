"""HTTP routes of background jobs: list a session's jobs, read one, cancel one."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from typing import Annotated, Any

from fastapi import Depends, FastAPI

from orchestrator.api.guard import Guards, at_session
from orchestrator.commands.jobs import Jobs
from orchestrator.commands.records import served_record
from orchestrator.policies.model import PERM_VIEW
from orchestrator.policies.pipeline import Request


def add_job_routes(app: FastAPI, jobs: Jobs, guards: Guards) -> None:
    """Register /sessions/{id}/jobs[/{job}[/cancel]] on `app`."""
    view_session = guards.requires(PERM_VIEW, at_session)

    @app.get("/sessions/{session_id}/jobs")
    def list_jobs(session_id: str, req: Annotated[Request, Depends(view_session)]
                  ) -> list[dict[str, Any]]:
        """View on the session's device."""
        return [served_record(r).model_dump(mode="json") for r in jobs.list(session_id)]

    @app.get("/sessions/{session_id}/jobs/{job}")
    def get_job(session_id: str, job: int,
                req: Annotated[Request, Depends(view_session)]) -> dict[str, Any]:
        """View on the session's device."""
        return served_record(jobs.get(session_id, job)).model_dump(mode="json")

    @app.post("/sessions/{session_id}/jobs/{job}/cancel")
    def cancel_job(session_id: str, job: int,
                   req: Annotated[Request, Depends(guards.requires(None, audited=False))]
                   ) -> dict[str, Any]:
        """The cancel pipeline: the session's owner or an admin, holding every permission
        the command needed on the device; a running command is stopped on the agent."""
        cancelled = jobs.cancel(req.need_user(), session_id, job)
        return served_record(cancelled).model_dump(mode="json")
