"""HTTP routes of a command after its request: read it; list, approve (then wait), deny."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field

from orchestrator.approvals import Approvals
from orchestrator.dispatch import Dispatcher
from orchestrator.identity import User
from orchestrator.plane import ControlPlane
from orchestrator.records import CommandRecord


class DenyBody(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


def add_approval_routes(app: FastAPI, plane: ControlPlane, dispatcher: Dispatcher,
                        current_user: Callable[..., User], viewer: Callable[..., User],
                        answer: Callable[[CommandRecord], Response]) -> None:
    """Register /approvals, /commands/{id} and /commands/{id}/approve|deny on `app`."""
    approvals = Approvals(dispatcher)

    @app.get("/approvals")
    def list_pending(user: Annotated[User, Depends(viewer)]) -> list[dict[str, Any]]:
        """Check: view. Commands waiting for a second person (overdue ones expire here)."""
        return [r.model_dump(mode="json") for r in approvals.pending()]

    @app.get("/commands/{command_id}")
    def get_command(command_id: str, user: Annotated[User, Depends(viewer)]) -> dict[str, Any]:
        """Check: view. A command whose approval window passed shows as expired."""
        approvals.expire_overdue()
        return dispatcher.get(command_id).model_dump(mode="json")

    @app.post("/commands/{command_id}/approve")
    def approve(command_id: str, user: Annotated[User, Depends(current_user)]) -> Response:
        """Check: not the requester, the command's permission on its device, still pending,
        within its window; then the command runs and the approver gets its result."""
        return answer(dispatcher.wait(approvals.approve(user, command_id)))

    @app.post("/commands/{command_id}/deny")
    def deny(command_id: str, user: Annotated[User, Depends(current_user)],
             body: DenyBody | None = None) -> Response:
        """Check: the same as approve; the command never reaches its device."""
        return answer(approvals.deny(user, command_id, body.reason if body else None))
