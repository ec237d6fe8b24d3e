"""The orchestrator's HTTP API (FastAPI). Every route names the check that guards it."""

# No `from __future__ import annotations` here: FastAPI must see the dependency objects
# of the routes defined inside create_app, not strings it cannot resolve.

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from orchestrator.dispatch import Dispatcher
from orchestrator.identity import User, authenticate
from orchestrator.plane import ControlPlane
from orchestrator.policies.rbac import PERM_SESSION, PERM_VIEW, require
from tasks.errors import AuthenticationError, LiveResponseError, PermissionDeniedError

log = logging.getLogger(__name__)


class OpenSessionBody(BaseModel):
    device_id: str = Field(min_length=1, max_length=200)


class RunBody(BaseModel):
    line: str = Field(min_length=1, max_length=8192)


def create_app(plane: ControlPlane) -> FastAPI:
    """The FastAPI app serving `plane`."""
    app = FastAPI(title="liveresponse orchestrator", version="0.1.0")
    dispatcher = Dispatcher(plane)
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

    def _require(user: User, permission: str, target: str) -> None:
        try:
            require(user.name, user.roles, permission)
        except PermissionDeniedError as exc:
            plane.audit.append(user.name, "access.denied", target, "denied",
                               permission=permission, message=exc.message)
            raise

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

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Check: open — a liveness probe that reveals nothing but that Redis answers."""
        return {"ok": bool(plane.client.ping())}

    @app.get("/whoami")
    def whoami(user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Check: authenticated only — every user may see who they are."""
        return {"user": user.name, "roles": user.roles}

    @app.get("/devices")
    def list_devices(user: Annotated[User, Depends(viewer)]) -> list[dict[str, Any]]:
        """Check: view."""
        return [d.model_dump(mode="json") for d in plane.devices.list()]

    @app.get("/devices/{device_id}")
    def get_device(device_id: str, user: Annotated[User, Depends(viewer)]) -> dict[str, Any]:
        """Check: view."""
        return plane.devices.get(device_id).model_dump(mode="json")

    @app.post("/sessions", status_code=201)
    def open_session(body: OpenSessionBody,
                     user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Check: session.open, and the device must be registered."""
        try:
            _require(user, PERM_SESSION, body.device_id)
            device = plane.devices.get(body.device_id)
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
        if session.user != user.name and "admin" not in user.roles:
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
        """Check: the full command pipeline (session, parse, permission, device, isolation)."""
        record = dispatcher.run(user, session_id, body.line)
        # Serialised by pydantic directly: results can be large, the generic encoder is slow.
        return Response(record.model_dump_json(), media_type="application/json")

    @app.get("/commands/{command_id}")
    def get_command(command_id: str, user: Annotated[User, Depends(viewer)]) -> dict[str, Any]:
        """Check: view."""
        return dispatcher.get(command_id).model_dump(mode="json")

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
        """Check: view."""
        return plane.audit.verify().model_dump(mode="json")

    return app
