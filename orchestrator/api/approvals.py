"""HTTP routes of a command after its request: read it; list, approve (then wait), deny."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field

from orchestrator.api.guard import Guards, Scope, at_command
from orchestrator.api.responses import COMMAND_ANSWERS, COMMAND_RECORD, errors
from orchestrator.commands.approvals import Approvals
from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.reaper import collect, watched
from orchestrator.commands.records import CommandRecord, served_record
from orchestrator.plane import ControlPlane
from orchestrator.policies.model import PERM_VIEW
from orchestrator.policies.pipeline import Request


class DenyBody(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


def add_approval_routes(app: FastAPI, plane: ControlPlane, dispatcher: Dispatcher,
                        guards: Guards, answer: Callable[[CommandRecord], Response]) -> None:
    """Register /approvals, /commands/{id} and /commands/{id}/approve|deny on `app`."""
    approvals = Approvals(dispatcher)
    acting = guards.requires(None, audited=False)

    @app.get("/approvals")
    def list_pending(req: Annotated[Request, Depends(guards.requires(PERM_VIEW))]
                     ) -> list[dict[str, Any]]:
        """Commands waiting for a second person on devices the user may view (overdue ones
        expire here)."""
        return [served_record(r).model_dump(mode="json")
                for r in Scope(req).only(approvals.pending(), lambda r: r.device_id)]

    @app.get("/commands/{command_id}", responses=COMMAND_RECORD)
    def get_command(command_id: str,
                    req: Annotated[Request, Depends(guards.requires(PERM_VIEW, at_command))]
                    ) -> Response:
        """View on the command's device. A command whose approval window passed shows as
        expired; one nobody waits for (a job's, a batch's) that has ended is recorded here,
        as the reaper would record it."""
        record = dispatcher.get(command_id) if approvals.expire_overdue() else req.record
        assert record is not None
        if not record.outcome_recorded and not watched(record) and collect(
                plane, dispatcher, [record], grace_s=0.0):
            record = dispatcher.get(command_id)
        return answer_json(record)

    @app.post("/commands/{command_id}/approve",
              responses={**COMMAND_ANSWERS, **errors(409, 504)})
    def approve(command_id: str, req: Annotated[Request, Depends(acting)]) -> Response:
        """The approve pipeline: not the requester, the command's permissions on its device,
        still pending, within its window; then the command runs and the approver gets its
        result."""
        return answer(dispatcher.wait(approvals.approve(req.need_user(), command_id)))

    @app.post("/commands/{command_id}/deny", responses={**COMMAND_RECORD, **errors(409)})
    def deny(command_id: str, req: Annotated[Request, Depends(acting)],
             body: DenyBody | None = None) -> Response:
        """The deny pipeline (as approve); the command never reaches its device."""
        return answer(approvals.deny(req.need_user(), command_id, body.reason if body else None))

    def answer_json(record: CommandRecord) -> Response:
        """The record as it stands (200 whatever its state), its result checked."""
        return Response(served_record(record).model_dump_json(), media_type="application/json")
