"""HTTP routes of fleet batches: send one line to many devices, follow it, cancel it."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from orchestrator.api.guard import Guards, Scope
from orchestrator.api.responses import errors
from orchestrator.commands.dispatch import Dispatcher
from orchestrator.fleet.batches import Batch, batch_ids, load_batch
from orchestrator.fleet.collect import collect
from orchestrator.fleet.fanout import FleetDispatcher
from orchestrator.plane import ControlPlane
from orchestrator.policies.checks import CANCEL_COMMAND
from orchestrator.policies.model import PERM_VIEW
from orchestrator.policies.pipeline import Request
from tasks.errors import LiveResponseError, NotFoundError

#: Most batches `GET /batches` lists.
LIST_LIMIT = 100


class BatchBody(BaseModel):
    #: Device ids and `tag:NAME` terms, comma-separated.
    selector: str = Field(min_length=1, max_length=65536)
    line: str = Field(min_length=1, max_length=8192)
    #: How long each command may wait for an offline device (default: the orchestrator's).
    expires_s: float | None = Field(default=None, strict=True)


def add_batch_routes(app: FastAPI, plane: ControlPlane, dispatcher: Dispatcher,
                     guards: Guards) -> None:
    """Register /batches[/{id}[/cancel]] on `app`."""
    fleet = FleetDispatcher(plane, dispatcher)
    acting = guards.requires(None, audited=False)
    viewing = guards.requires(PERM_VIEW)

    def visible(req: Request, batch: Batch) -> Batch:
        """The batch as the user may see it: only entries of devices they may view."""
        entries = Scope(req).only(batch.entries, lambda e: e.device)
        if not entries and batch.user != req.need_user().name:
            raise NotFoundError(f"unknown batch {batch.id!r}",
                                hint="list batches with `lr batch list`")
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return batch.model_copy(update={"entries": entries, "counts": dict(sorted(counts.items()))})

    @app.post("/batches", status_code=201, responses=errors(404))
    def create_batch(body: BatchBody, req: Annotated[Request, Depends(acting)]
                     ) -> dict[str, Any]:
        """The fleet pipeline once for the line, then each device's own checks; a device
        refused is reported denied (and audited), the others are sent."""
        batch = fleet.submit(req.need_user(), body.selector, body.line,
                             expires_s=body.expires_s)
        return batch.model_dump(mode="json")

    @app.get("/batches")
    def list_batches(req: Annotated[Request, Depends(viewing)]) -> list[dict[str, Any]]:
        """The newest batches whose devices the user may view (entries left out)."""
        out = []
        for batch_id in batch_ids(plane, LIST_LIMIT):
            try:
                batch = visible(req, load_batch(plane, batch_id))
            except NotFoundError:
                continue
            out.append(batch.model_copy(update={"entries": []}).model_dump(mode="json"))
        return out

    @app.get("/batches/{batch_id}")
    def get_batch(batch_id: str, req: Annotated[Request, Depends(viewing)]) -> dict[str, Any]:
        """Live counts and each visible device's record; outcomes that arrived are recorded
        first."""
        collect(plane, dispatcher, batch_id)
        return visible(req, load_batch(plane, batch_id)).model_dump(mode="json")

    @app.post("/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str, req: Annotated[Request, Depends(acting)]
                     ) -> dict[str, Any]:
        """Each unfinished command through the cancel checks (the permissions the command
        needed on its device); a running one is stopped on its agent."""
        user = req.need_user()
        batch = load_batch(plane, batch_id)
        cancelled, refused = [], {}
        for entry in batch.entries:
            if entry.final or entry.command_id is None:
                continue
            one = Request(plane, target=entry.command_id, user=user,
                          command_id=entry.command_id, details={"batch": batch_id})
            try:
                CANCEL_COMMAND.check(one)
            except LiveResponseError as exc:
                refused[entry.device] = exc.message
                continue
            if dispatcher.cancel(user, entry.command_id, "", f"batch {batch_id} cancelled"):
                cancelled.append(entry.device)
        collect(plane, dispatcher, batch_id)
        shown = visible(req, load_batch(plane, batch_id)).model_dump(mode="json")
        return {**shown, "cancelled": cancelled, "refused": refused}
