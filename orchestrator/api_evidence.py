"""HTTP routes of the evidence store: list acquisitions, download an object by sha256."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

from orchestrator.evidence import EvidenceRecord, EvidenceStore, check_sha256
from orchestrator.identity import User
from orchestrator.plane import ControlPlane
from orchestrator.policies.rbac import is_allowed
from tasks.errors import LiveResponseError, PermissionDeniedError
from tasks.registry import PERM_COLLECT

#: Header of a download naming the object's sha256, so a client can check what it received.
SHA256_HEADER = "X-Evidence-Sha256"


def add_evidence_routes(app: FastAPI, plane: ControlPlane, current_user: Callable[..., User],
                        require: Callable[..., None]) -> None:
    """Register /evidence and /evidence/{sha256} on `app`."""

    def store() -> EvidenceStore:
        return EvidenceStore(plane.settings.evidence_path(), plane.client, plane.keys)

    def may_collect(user: User, record: EvidenceRecord) -> bool:
        """Whether `user` may collect from the device the record came from (scoped roles)."""
        try:
            tags = plane.devices.get(record.device_id).tags
        except LiveResponseError:  # a device gone since: only unscoped grants still apply
            tags = []
        return is_allowed(plane.policies.policy, user.grants, PERM_COLLECT, tags)

    @app.get("/evidence")
    def list_evidence(request: Request,
                      user: Annotated[User, Depends(current_user)]) -> list[dict[str, Any]]:
        """Check: live.collect; a user whose role is scoped sees only their devices' evidence."""
        require(user, PERM_COLLECT, request.url.path)
        return [r.model_dump(mode="json") for r in store().acquisitions() if may_collect(user, r)]

    @app.get("/evidence/{sha256}")
    def get_evidence(sha256: str, request: Request,
                     user: Annotated[User, Depends(current_user)]) -> StreamingResponse:
        """Check: live.collect on a device the object came from. Streams the bytes; every
        download is audited."""
        require(user, PERM_COLLECT, request.url.path)
        check_sha256(sha256)
        evidence = store()
        records = evidence.find(sha256)
        allowed = [r for r in records if may_collect(user, r)]
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
        return StreamingResponse(
            evidence.read(sha256), media_type="application/octet-stream",
            headers={"Content-Length": str(size), SHA256_HEADER: sha256,
                     "Content-Disposition": f'attachment; filename="{sha256}"'})
