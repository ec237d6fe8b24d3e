"""HTTP routes of the evidence store: list acquisitions, download an object by sha256."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi import Request as HttpRequest

from orchestrator.api.guard import Guards, Scope
from orchestrator.api.responses import BytesResponse
from orchestrator.files.evidence import EvidenceStore, check_sha256
from orchestrator.plane import ControlPlane
from orchestrator.policies.pipeline import Request
from tasks.errors import PermissionDeniedError
from tasks.registry import PERM_COLLECT

#: Header of a download naming the object's sha256, so a client can check what it received.
SHA256_HEADER = "X-Evidence-Sha256"


def add_evidence_routes(app: FastAPI, plane: ControlPlane, guards: Guards) -> None:
    """Register /evidence and /evidence/{sha256} on `app`."""
    collect = guards.requires(PERM_COLLECT)

    def store() -> EvidenceStore:
        return EvidenceStore(plane.settings.evidence_path(), plane.client, plane.keys)

    @app.get("/evidence")
    def list_evidence(req: Annotated[Request, Depends(collect)]) -> list[dict[str, Any]]:
        """live.collect; a user whose role is scoped sees only their devices' evidence."""
        scope = Scope(req, PERM_COLLECT)
        return [r.model_dump(mode="json")
                for r in scope.only(store().acquisitions(), lambda r: r.device_id)]

    @app.get("/evidence/{sha256}", response_class=BytesResponse)
    def get_evidence(sha256: str, request: HttpRequest,
                     req: Annotated[Request, Depends(guards.requires(PERM_COLLECT,
                                                                     audited=False))]
                     ) -> BytesResponse:
        """live.collect on a device the object came from. Streams the bytes; every
        download is audited."""
        user = req.need_user()
        check_sha256(sha256)
        evidence = store()
        allowed = Scope(req, PERM_COLLECT).only(evidence.find(sha256), lambda r: r.device_id)
        if not allowed:
            exc = PermissionDeniedError(
                f"user {user.name!r} may not collect from the devices evidence {sha256[:16]}… "
                "came from", hint="ask an admin for live.collect on that device's group")
            plane.audit.append(user.name, "access.denied", request.url.path, "denied",
                               permission=PERM_COLLECT, sha256=sha256, message=exc.message)
            raise exc
        size = allowed[0].size_bytes
        plane.audit.append(user.name, "evidence.downloaded", sha256, "allowed",
                           sha256=sha256, size_bytes=size,
                           command_ids=[r.command_id for r in allowed],
                           devices=sorted({r.device_id for r in allowed}))
        return BytesResponse(
            evidence.read(sha256),
            headers={"Content-Length": str(size), SHA256_HEADER: sha256,
                     "Content-Disposition": f'attachment; filename="{sha256}"'})
