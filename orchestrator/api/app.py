"""The orchestrator's HTTP API (FastAPI). Every route declares its check (`api.guard`)."""

# No `from __future__ import annotations` here: FastAPI must see the dependency objects
# of the routes defined inside create_app, not strings it cannot resolve.

import logging
import shlex
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.api.admin import add_admin_routes
from orchestrator.api.approvals import add_approval_routes
from orchestrator.api.audit import add_audit_routes
from orchestrator.api.batches import add_batch_routes
from orchestrator.api.docs import add_docs_routes
from orchestrator.api.evidence import add_evidence_routes
from orchestrator.api.guard import Guards, Scope, at_device, at_session
from orchestrator.api.jobs import add_job_routes
from orchestrator.api.library import add_library_routes
from orchestrator.api.light import bad_request, command_route
from orchestrator.api.playbooks import add_playbook_routes
from orchestrator.api.query import refuse_unknown_query
from orchestrator.api.responses import (
    COMMAND_ANSWERS,
    EVERY_ROUTE,
    document_errors,
    errors,
)
from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.jobs import Jobs, check_job_line, split_background
from orchestrator.commands.reaper import Reaper
from orchestrator.commands.records import CommandRecord, served_record
from orchestrator.commands.table import check_command_table
from orchestrator.plane import ControlPlane
from orchestrator.policies.checks import CLOSE_SESSION, OPEN_SESSION
from orchestrator.policies.model import PERM_VIEW
from orchestrator.policies.pipeline import Request
from orchestrator.redis_outage import UNREACHABLE, caused_by_redis, redis_unavailable
from orchestrator.state.sessions import Session
from tasks.envelope import CommandStatus
from tasks.errors import LiveResponseError
from tasks.registry import REGISTRY

log = logging.getLogger(__name__)

#: The error code of Starlette's own refusals, by status.
HTTP_ERROR_CODES = {400: "usage", 404: "not_found", 405: "method_not_allowed"}


class OpenSessionBody(BaseModel):
    device_id: str = Field(min_length=1, max_length=200)
    #: Where the session starts on the device (absolute); default the device's root.
    cwd: str | None = Field(default=None, min_length=1)


class RunBody(BaseModel):
    line: str = Field(min_length=1, max_length=8192)
    #: Answer at once with the record (and a job number); the orchestrator collects the result.
    background: bool = Field(default=False, strict=True)
    #: How long the command may wait for an offline device (default: the orchestrator's).
    expires_s: float | None = Field(default=None, strict=True)


class IsolateBody(BaseModel):
    mode: str = Field(default="full", max_length=16)
    allow: str | None = Field(default=None, max_length=4096)


def create_app(plane: ControlPlane) -> FastAPI:
    """The FastAPI app serving `plane`; refused unless every command has its side declared."""
    check_command_table(REGISTRY)
    reaper = Reaper(plane)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Every command's outcome is recorded, whoever was waiting for it (batches: at once).
        reaper.start()
        try:
            yield
        finally:
            reaper.stop()

    # /docs is served from this server's own files (`api.docs`), never from a CDN.
    app = FastAPI(title="liveresponse orchestrator", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, responses=EVERY_ROUTE,
                  dependencies=[Depends(refuse_unknown_query)])
    document_errors(app)
    dispatcher = Dispatcher(plane)
    jobs = Jobs(dispatcher)
    app.state.jobs = jobs
    app.state.plane = plane
    guards = Guards(plane)
    #: Authenticated only: the route's body runs the whole pipeline of its action.
    acting = guards.requires(None, audited=False)

    def _answer(record: CommandRecord) -> Response:
        """A command record, its result checked against its command's model; 202 while it
        has no outcome yet (held, or a background job)."""
        status = 200 if record.status.final else 202
        # Serialised by pydantic directly: results can be large, the generic encoder is slow.
        return Response(served_record(record).model_dump_json(), status_code=status,
                        media_type="application/json")

    @app.exception_handler(LiveResponseError)
    async def on_lr_error(_: HttpRequest, exc: LiveResponseError) -> JSONResponse:
        if caused_by_redis(exc):
            return _on_redis_down(exc)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    def _on_redis_down(exc: BaseException) -> JSONResponse:
        log.warning("Redis unreachable: %s", type(exc).__name__)
        error = redis_unavailable(plane.settings.redis_url)
        return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)

    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, lambda _, exc: _on_redis_down(exc))

    @app.exception_handler(RequestValidationError)
    async def on_bad_request(_: HttpRequest, exc: RequestValidationError) -> JSONResponse:
        return bad_request(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: HttpRequest, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (a body that is not JSON, no such route, wrong method) in
        # the body every other error has.
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_crash(_: HttpRequest, exc: Exception) -> JSONResponse:
        if caused_by_redis(exc):
            return _on_redis_down(exc)
        log.exception("unhandled error")
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error in the orchestrator",
                       "hint": "see the orchestrator's log"}},
            status_code=500,
        )

    add_admin_routes(app, plane, guards)
    add_approval_routes(app, plane, dispatcher, guards, _answer)
    add_job_routes(app, jobs, guards)
    add_batch_routes(app, plane, dispatcher, guards)

    @app.get("/health", dependencies=[Depends(guards.open(
        "a liveness probe that reveals nothing but that Redis answers"))])
    def health() -> dict[str, Any]:
        return {"ok": bool(plane.client.ping())}

    @app.get("/whoami")
    def whoami(req: Annotated[Request, Depends(guards.requires(None))]) -> dict[str, Any]:
        """Every authenticated user may see who they are."""
        user = req.need_user()
        return {"user": user.name, "roles": user.roles,
                "grants": [g.model_dump() for g in user.grants]}

    @app.get("/devices")
    def list_devices(req: Annotated[Request, Depends(guards.requires(PERM_VIEW))],
                     tag: str | None = None, online: bool | None = None
                     ) -> list[dict[str, Any]]:
        """A user whose view is scoped sees only the devices of their groups; `tag` and
        `online` filter; each device says how many sessions are open on it."""
        scope = Scope(req)
        open_sessions = Counter(s.device_id for s in plane.sessions.list())
        return [{**d.model_dump(mode="json"), "open_sessions": open_sessions[d.id]}
                for d in plane.devices.list()
                if scope.covers(d.id) and (tag is None or tag in d.tags)
                and (online is None or d.online is online)]

    @app.get("/devices/{device_id}")
    def get_device(device_id: str,
                   req: Annotated[Request, Depends(guards.requires(PERM_VIEW, at_device))]
                   ) -> dict[str, Any]:
        return plane.devices.get(device_id).model_dump(mode="json")

    @app.post("/sessions", status_code=201, responses=errors(404))
    def open_session(body: OpenSessionBody,
                     req: Annotated[Request, Depends(acting)]) -> dict[str, Any]:
        """The session.open pipeline on the device named in the body."""
        req.device_id = body.device_id
        req.target = body.device_id

        def open_it(checked: Request) -> Session:
            assert checked.device is not None
            session = plane.sessions.open(checked.need_user().name, checked.device.id,
                                          body.cwd)
            plane.audit.append(checked.actor, "session.opened", session.device_id, "allowed",
                               session=session.id, device=session.device_id, cwd=session.cwd)
            return session

        opened = OPEN_SESSION.run(req, open_it).model_dump(mode="json")
        assert req.device is not None
        # A session on an offline device opens (its commands wait for the agent): say so.
        return {**opened, "device_online": req.device.online,
                "device_last_seen": req.device.last_seen}

    @app.get("/sessions")
    def list_sessions(req: Annotated[Request, Depends(guards.requires(PERM_VIEW))],
                      all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        """Only sessions on devices the user may view."""
        sessions = plane.sessions.list(include_closed=all)
        return [s.model_dump(mode="json")
                for s in Scope(req).only(sessions, lambda s: s.device_id)]

    @app.get("/sessions/{session_id}")
    def get_session(session_id: str,
                    req: Annotated[Request, Depends(guards.requires(PERM_VIEW, at_session))]
                    ) -> dict[str, Any]:
        assert req.session is not None
        return req.session.model_dump(mode="json")

    @app.delete("/sessions/{session_id}", responses=errors(409))
    def close_session(session_id: str,
                      req: Annotated[Request, Depends(acting)]) -> dict[str, Any]:
        """The session's owner, or an admin; its unfinished commands are cancelled."""

        def close_it(checked: Request) -> Session:
            user = checked.need_user()
            closed = plane.sessions.close(session_id)
            dispatcher.cancel_pending(user, session_id, reason="session closed")
            plane.audit.append(user.name, "session.closed", closed.device_id, "allowed",
                               session=session_id, device=closed.device_id)
            return closed

        return CLOSE_SESSION.run(req, close_it).model_dump(mode="json")

    def run_command(session_id: str, token: str | None, body: RunBody) -> Response:
        """The command pipeline (authenticate, session, parse, device, permissions on the
        device, isolation, approval). A command held for approval, or run in the background
        (`&` at the end of the line, or "background": true), answers 202 at once."""
        line, background = split_background(body.line)
        if background or body.background:
            check_job_line(line)
        record = dispatcher.submit_token(token, session_id, line, expires_s=body.expires_s)
        if background or body.background:
            return _answer(jobs.adopt(record))
        if record.status is CommandStatus.PENDING_APPROVAL:
            return _answer(record)
        return _answer(dispatcher.wait(record))

    # The busiest route is served without FastAPI's per-request dependency and body
    # machinery (BENCHMARKS.md); its check is the command pipeline, authenticate first.
    # It is matched first: Starlette tries routes in order, and no other has its path.
    app.router.routes.insert(0, command_route(
        "/sessions/{session_id}/commands", RunBody, run_command,
        check="authenticated: the command pipeline authenticates first"))

    @app.post("/sessions/{session_id}/commands",
              responses={**COMMAND_ANSWERS, **errors(409, 504)})
    def run_command_documented(session_id: str, body: RunBody,
                               req: Annotated[Request, Depends(acting)]) -> Response:
        """The command pipeline (authenticate, session, parse, device, permissions on the
        device, isolation, approval). A command held for approval, or run in the background
        (`&` at the end of the line, or "background": true), answers 202 at once."""
        # The OpenAPI document's entry of the route above: that route comes first in the
        # route table and serves every request to this path, so this body never runs.
        raise AssertionError("POST /sessions/{session_id}/commands is served by command_route")

    @app.post("/devices/{device_id}/isolate", responses={**COMMAND_ANSWERS, **errors(409, 504)})
    def isolate(device_id: str, body: IsolateBody,
                req: Annotated[Request, Depends(acting)]) -> Response:
        """The device pipeline (permission live.isolate on the device, approval)."""
        words = ["isolate", "--mode", body.mode] + (["--allow", body.allow] if body.allow else [])
        return _device_command(req, device_id, shlex.join(words))

    @app.post("/devices/{device_id}/release", responses={**COMMAND_ANSWERS, **errors(409, 504)})
    def release(device_id: str, req: Annotated[Request, Depends(acting)]) -> Response:
        """The device pipeline (permission live.isolate on the device, approval)."""
        return _device_command(req, device_id, "release")

    def _device_command(req: Request, device_id: str, line: str) -> Response:
        record = dispatcher.submit_device(req.need_user(), device_id, line)
        if record.status is CommandStatus.PENDING_APPROVAL:
            return _answer(record)
        return _answer(dispatcher.wait(record))

    add_audit_routes(app, plane, guards)
    add_library_routes(app, plane, guards)
    add_evidence_routes(app, plane, guards)
    add_playbook_routes(app, plane, guards)
    add_docs_routes(app, guards)

    return app
