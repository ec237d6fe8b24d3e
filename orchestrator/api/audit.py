"""HTTP routes of the audit stream: show, verify, export (JSON Lines) and trim."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field

from orchestrator.api.guard import Guards, Scope, entry_device, everywhere
from orchestrator.api.responses import JsonLinesResponse
from orchestrator.audit.export_file import export_lines
from orchestrator.audit.trim import LATEST_TRIM_TS, trim_audit
from orchestrator.plane import ControlPlane
from orchestrator.policies.model import PERM_ADMIN, PERM_VIEW
from orchestrator.policies.pipeline import Request
from tasks.errors import LiveResponseError

#: Media type of an export: one JSON document per line.
JSONL_MEDIA_TYPE = JsonLinesResponse.media_type


class TrimBody(BaseModel):
    #: Seconds since 1970 (a number, never `true`): entries older than this are removed.
    before: float = Field(strict=True, ge=0, le=LATEST_TRIM_TS, allow_inf_nan=False)


def add_audit_routes(app: FastAPI, plane: ControlPlane, guards: Guards) -> None:
    """Register /audit, /audit/verify, /audit/export and /audit/trim on `app`."""
    # Reading the stream is not written into it (each read would show itself); an export
    # is (`audit.exported`).
    view = guards.requires(PERM_VIEW, audited=False)

    @app.get("/audit")
    def audit_show(
        req: Annotated[Request, Depends(view)],
        session: str | None = None, device: str | None = None, actor: str | None = None,
        command: str | None = None, since: float | None = None, until: float | None = None,
        limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    ) -> list[dict[str, Any]]:
        """Entries about devices the user may view; entries naming no device only for users
        whose view is not scoped to groups. `limit` counts the entries shown."""
        scope = Scope(req)
        entries = plane.audit.read(session=session, device=device, actor=actor,
                                   command=command, since=since, until=until, limit=limit,
                                   visible=lambda e: scope.covers(entry_device(e)))
        return [e.model_dump(mode="json") for e in entries]

    @app.get("/audit/verify")
    def audit_verify(req: Annotated[Request, Depends(view)]) -> dict[str, Any]:
        """Signatures and a trimmed chain's checkpoint are checked with the orchestrator's
        key (and those it retired), the newest entries with its witness."""
        return plane.audit.verify(plane.audit.trusted).model_dump(mode="json")

    @app.get("/audit/export", response_class=JsonLinesResponse)
    def audit_export(req: Annotated[Request, Depends(guards.requires(PERM_VIEW, everywhere,
                                                                audited=False))]
                     ) -> JsonLinesResponse:
        """View on every device (the chain spans them all). The whole chain as one
        snapshot, streamed; the export is audited."""
        user = req.need_user()
        snap = plane.audit.snapshot()
        plane.audit.append(user.name, "audit.exported", "audit", "allowed",
                           entries=snap.entries, head=snap.head)
        return JsonLinesResponse(export_lines(plane.audit, snap))

    @app.post("/audit/trim")
    def audit_trim(body: TrimBody,
                   req: Annotated[Request, Depends(guards.requires(PERM_ADMIN, audited=False))]
                   ) -> dict[str, Any]:
        """Admin. Removes entries older than `before` under a signed checkpoint."""
        user = req.need_user()
        try:
            result = trim_audit(plane.audit, plane.signer, actor=user.name, before=body.before)
        except LiveResponseError as exc:
            plane.audit.append(user.name, "audit.trim.denied", "audit", "denied",
                               before=body.before, reason=exc.code, message=exc.message)
            raise
        return result.to_json()
