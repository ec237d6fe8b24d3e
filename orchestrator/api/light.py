"""A route served by Starlette alone: its JSON body checked, its handler run in a worker thread.

FastAPI's per-request machinery (dependency solving, body and response handling) costs a
measurable part of a command's round trip (BENCHMARKS.md). The route built here does only what
that route needs; its check is declared on the endpoint (`CHECK_ATTR`), as a guard's is, and
lives in the pipeline its handler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from orchestrator.api.guard import CHECK_ATTR
from orchestrator.api.query import unknown_query_error


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer …` header, read as the guards' `HTTPBearer`
    reads it: a missing or other header is no token (the pipeline's `authenticate` denies)."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    return token if scheme.lower() == "bearer" and token else None


def bad_request(errors: Sequence[Any]) -> JSONResponse:
    """The one-line 400 of a body that does not fit its model (the first problem named)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse(
        {"error": {"code": "usage", "message": f"bad request: {where}: {first['msg']}"}},
        status_code=400,
    )


def command_route(path: str, body_model: type[BaseModel],
                  handler: Callable[..., Response], *, check: str) -> Route:
    """POST `path`: `handler(**path_params, token=bearer token, body=model)` in a thread."""

    async def endpoint(request: HttpRequest) -> Response:
        if request.query_params:  # it takes none
            unknown = sorted(request.query_params)
            return bad_request(unknown_query_error(unknown, frozenset()).errors())
        try:
            body = body_model.model_validate_json(await request.body())
        except ValidationError as exc:
            return bad_request([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
        return await run_in_threadpool(handler, **request.path_params,
                                       token=bearer_token(request), body=body)

    setattr(endpoint, CHECK_ATTR, check)
    return Route(path, endpoint, methods=["POST"])
