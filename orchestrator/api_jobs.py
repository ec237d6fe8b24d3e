"""HTTP routes of background jobs: list a session's jobs, read one, cancel one."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from orchestrator.identity import User
from orchestrator.jobs import Jobs


def add_job_routes(app: FastAPI, jobs: Jobs, current_user: Callable[..., User],
                   viewer: Callable[..., User]) -> None:
    """Register /sessions/{id}/jobs[/{job}[/cancel]] on `app`."""

    @app.get("/sessions/{session_id}/jobs")
    def list_jobs(session_id: str, user: Annotated[User, Depends(viewer)]) -> list[dict[str, Any]]:
        """Check: view."""
        return [r.model_dump(mode="json") for r in jobs.list(session_id)]

    @app.get("/sessions/{session_id}/jobs/{job}")
    def get_job(session_id: str, job: int,
                user: Annotated[User, Depends(viewer)]) -> dict[str, Any]:
        """Check: view."""
        return jobs.get(session_id, job).model_dump(mode="json")

    @app.post("/sessions/{session_id}/jobs/{job}/cancel")
    def cancel_job(session_id: str, job: int,
                   user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Check: the session's owner or an admin, holding the command's permission on the
        device; a running command is stopped on the agent."""
        return jobs.cancel(user, session_id, job).model_dump(mode="json")
