"""HTTP routes of the audit stream: show, verify, export (JSON Lines) and trim."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from orchestrator.audit_file import export_lines
from orchestrator.audit_trim import trim_audit
from orchestrator.identity import User
from orchestrator.plane import ControlPlane
from orchestrator.policies.rbac import PERM_ADMIN
from tasks.errors import LiveResponseError

#: Media type of an export: one JSON document per line.
JSONL_MEDIA_TYPE = "application/x-ndjson"


class TrimBody(BaseModel):
    before: float = Field(allow_inf_nan=False)


def add_audit_routes(app: FastAPI, plane: ControlPlane, current_user: Callable[..., User],
                     viewer: Callable[..., User], require: Callable[..., None]) -> None:
    """Register /audit, /audit/verify, /audit/export and /audit/trim on `app`."""

    @app.get("/audit")
    def audit_show(
        user: Annotated[User, Depends(viewer)],
        session: str | None = None, device: str | None = None, actor: str | None = None,
        command: str | None = None, since: float | None = None, until: float | None = None,
        limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    ) -> list[dict[str, Any]]:
        """Check: view."""
        entries = plane.audit.read(session=session, device=device, actor=actor,
                                   command=command, since=since, until=until, limit=limit)
        return [e.model_dump(mode="json") for e in entries]

    @app.get("/audit/verify")
    def audit_verify(user: Annotated[User, Depends(viewer)]) -> dict[str, Any]:
        """Check: view. A trimmed chain's checkpoint is checked with the orchestrator's key."""
        return plane.audit.verify(plane.signer.verifier()).model_dump(mode="json")

    @app.get("/audit/export")
    def audit_export(user: Annotated[User, Depends(viewer)]) -> StreamingResponse:
        """Check: view. The whole chain as one snapshot, streamed; the export is audited."""
        snap = plane.audit.snapshot()
        plane.audit.append(user.name, "audit.exported", "audit", "allowed",
                           entries=snap.entries, head=snap.head)
        return StreamingResponse(export_lines(plane.audit, snap), media_type=JSONL_MEDIA_TYPE)

    @app.post("/audit/trim")
    def audit_trim(body: TrimBody, request: Request,
                   user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Check: admin. Removes entries older than `before` under a signed checkpoint."""
        require(user, PERM_ADMIN, request.url.path)
        try:
            result = trim_audit(plane.audit, plane.signer, actor=user.name, before=body.before)
        except LiveResponseError as exc:
            plane.audit.append(user.name, "audit.trim.denied", "audit", "denied",
                               before=body.before, reason=exc.code, message=exc.message)
            raise
        return result.to_json()
