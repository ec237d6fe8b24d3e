"""The orchestrator's HTTP API (FastAPI). Every route names the check that guards it."""

# No `from __future__ import annotations` here: FastAPI must see the dependency objects
# of the routes defined inside create_app, not strings it cannot resolve.

import logging
import shlex
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from orchestrator.api_admin import add_admin_routes
from orchestrator.api_approvals import add_approval_routes
from orchestrator.api_audit import add_audit_routes
from orchestrator.api_evidence import add_evidence_routes
from orchestrator.api_jobs import add_job_routes
from orchestrator.api_library import add_library_routes
from orchestrator.devices import Device
from orchestrator.dispatch import Dispatcher
from orchestrator.identity import User, authenticate
from orchestrator.jobs import Jobs, split_background
from orchestrator.plane import ControlPlane
from orchestrator.policies.rbac import PERM_ADMIN, PERM_SESSION, PERM_VIEW, authorize, is_allowed
from orchestrator.records import CommandRecord
from tasks.envelope import CommandStatus
from tasks.errors import AuthenticationError, LiveResponseError, PermissionDeniedError

log = logging.getLogger(__name__)


class OpenSessionBody(BaseModel):
    device_id: str = Field(min_length=1, max_length=200)


class RunBody(BaseModel):
    line: str = Field(min_length=1, max_length=8192)
    #: Answer at once with the record (and a job number); the orchestrator collects the result.
    background: bool = False


class IsolateBody(BaseModel):
    mode: str = Field(default="full", max_length=16)
    allow: str | None = Field(default=None, max_length=4096)


def create_app(plane: ControlPlane) -> FastAPI:
    """The FastAPI app serving `plane`."""
    app = FastAPI(title="liveresponse orchestrator", version="0.1.0")
    dispatcher = Dispatcher(plane)
    jobs = Jobs(dispatcher)
    app.state.jobs = jobs
    app.state.plane = plane

    def current_user(request: Request) -> User:
        """Check: authenticate (bearer token). Failures are audited."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError(
                    "missing bearer token", hint="pass a token with LR_TOKEN or --token")
            return authenticate(plane.client, plane.keys, token.strip())
        except AuthenticationError as exc:
            plane.audit.append("anonymous", "auth.failed", request.url.path, "denied",
                               reason=exc.code, message=exc.message)
            raise

    def viewer(user: Annotated[User, Depends(current_user)], request: Request) -> User:
        """Check: authenticated and holds `view`."""
        _require(user, PERM_VIEW, request.url.path)
        return user

    def _require(user: User, permission: str, target: str, device: Device | None = None) -> None:
        """Check `permission` (on `device`, when given) under the policy in force; audit a no."""
        try:
            authorize(plane.policies.policy, user.name, user.grants, permission,
                      device.id if device else None, device.tags if device else None)
        except PermissionDeniedError as exc:
            plane.audit.append(user.name, "access.denied", target, "denied",
                               permission=permission, device=device.id if device else None,
                               message=exc.message)
            raise

    def _sees(user: User, tags: list[str]) -> bool:
        return is_allowed(plane.policies.policy, user.grants, PERM_VIEW, tags)

    def _answer(record: CommandRecord) -> Response:
        """A command record; 202 while it has no outcome yet (held, or a background job)."""
        status = 200 if record.status.final else 202
        # Serialised by pydantic directly: results can be large, the generic encoder is slow.
        return Response(record.model_dump_json(), status_code=status,
                        media_type="application/json")

    @app.exception_handler(LiveResponseError)
    async def on_lr_error(_: Request, exc: LiveResponseError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def on_bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error": {"code": "usage", "message": f"bad request: {where}: {first['msg']}"}},
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error in the orchestrator",
                       "hint": "see the orchestrator's log"}},
            status_code=500,
        )

    add_admin_routes(app, plane, current_user, _require)
    add_approval_routes(app, plane, dispatcher, current_user, viewer, _answer)
    add_job_routes(app, jobs, current_user, viewer)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Check: open — a liveness probe that reveals nothing but that Redis answers."""
        return {"ok": bool(plane.client.ping())}

    @app.get("/whoami")
    def whoami(user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Check: authenticated only — every user may see who they are."""
        return {"user": user.name, "roles": user.roles,
                "grants": [g.model_dump() for g in user.grants]}

    @app.get("/devices")
    def list_devices(user: Annotated[User, Depends(viewer)]) -> list[dict[str, Any]]:
        """Check: view; a user whose view is scoped sees only the devices of their groups."""
        return [d.model_dump(mode="json") for d in plane.devices.list()
                if _sees(user, d.tags)]

    @app.get("/devices/{device_id}")
    def get_device(device_id: str, user: Annotated[User, Depends(viewer)]) -> dict[str, Any]:
        """Check: view on this device."""
        device = plane.devices.get(device_id)
        _require(user, PERM_VIEW, device_id, device)
        return device.model_dump(mode="json")

    @app.post("/sessions", status_code=201)
    def open_session(body: OpenSessionBody,
                     user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Check: the device must be registered, and session.open on it (role and scope)."""
        try:
            device = plane.devices.get(body.device_id)
            _require(user, PERM_SESSION, body.device_id, device)
        except LiveResponseError as exc:
            plane.audit.append(user.name, "session.denied", body.device_id, "denied",
                               device=body.device_id, reason=exc.code, message=exc.message)
            raise
        session = plane.sessions.open(user.name, device.id)
        plane.audit.append(user.name, "session.opened", device.id, "allowed",
                           session=session.id, device=device.id)
        return session.model_dump(mode="json")

    @app.get("/sessions")
    def list_sessions(user: Annotated[User, Depends(viewer)],
                      all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        """Check: view."""
        return [s.model_dump(mode="json") for s in plane.sessions.list(include_closed=all)]

    @app.get("/sessions/{session_id}")
    def get_session(session_id: str, user: Annotated[User, Depends(viewer)]) -> dict[str, Any]:
        """Check: view."""
        return plane.sessions.get(session_id).model_dump(mode="json")

    @app.delete("/sessions/{session_id}")
    def close_session(session_id: str,
                      user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Check: the session's owner, or an admin."""
        session = plane.sessions.get(session_id)
        if session.user != user.name and not is_allowed(plane.policies.policy, user.grants,
                                                        PERM_ADMIN):
            exc = PermissionDeniedError(f"session {session_id} belongs to {session.user!r}")
            plane.audit.append(user.name, "session.denied", session_id, "denied",
                               session=session_id, reason=exc.code, message=exc.message)
            raise exc
        closed = plane.sessions.close(session_id)
        dispatcher.cancel_pending(user, session_id, reason="session closed")
        plane.audit.append(user.name, "session.closed", session.device_id, "allowed",
                           session=session_id, device=session.device_id)
        return closed.model_dump(mode="json")

    @app.post("/sessions/{session_id}/commands")
    def run_command(session_id: str, body: RunBody,
                    user: Annotated[User, Depends(current_user)]) -> Response:
        """Check: the full command pipeline (session, parse, device, permission on the device,
        isolation, approval). A command held for approval, or run in the background (`&` at
        the end of the line, or "background": true), answers 202 at once."""
        line, background = split_background(body.line)
        if background or body.background:
            return _answer(jobs.start(user, session_id, line))
        record = dispatcher.submit(user, session_id, line)
        if record.status is CommandStatus.PENDING_APPROVAL:
            return _answer(record)
        return _answer(dispatcher.wait(record))

    @app.post("/devices/{device_id}/isolate")
    def isolate(device_id: str, body: IsolateBody,
                user: Annotated[User, Depends(current_user)]) -> Response:
        """Check: the device pipeline (permission live.isolate on the device, approval)."""
        words = ["isolate", "--mode", body.mode] + (["--allow", body.allow] if body.allow else [])
        record = dispatcher.submit_device(user, device_id, shlex.join(words))
        if record.status is CommandStatus.PENDING_APPROVAL:
            return _answer(record)
        return _answer(dispatcher.wait(record))

    @app.post("/devices/{device_id}/release")
    def release(device_id: str, user: Annotated[User, Depends(current_user)]) -> Response:
        """Check: the device pipeline (permission live.isolate on the device, approval)."""
        record = dispatcher.submit_device(user, device_id, "release")
        if record.status is CommandStatus.PENDING_APPROVAL:
            return _answer(record)
        return _answer(dispatcher.wait(record))

    add_audit_routes(app, plane, current_user, viewer, _require)
    add_library_routes(app, plane, current_user, viewer, _require)
    add_evidence_routes(app, plane, current_user, _require)

    return app
