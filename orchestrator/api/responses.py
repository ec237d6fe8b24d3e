"""What the API answers besides its success bodies, declared once for its OpenAPI document.

Every error is `{"error": {"code", "message", "hint"?}}` (`ErrorBody`) with the status of its
exception class (`tasks.errors`). What every route may answer (authentication, permission,
Redis unreachable) is declared on the app; what only some routes answer, on those routes; a
request that does not validate is a 400, never FastAPI's 422 (`document_errors`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from orchestrator.commands.records import CommandRecord

#: Where the error body is in the OpenAPI document.
ERROR_REF = "#/components/schemas/ErrorBody"
#: FastAPI's own validation-error schemas: our handler answers 400 with ErrorBody instead.
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")

#: What each error status means on this API.
ERROR_MEANINGS: dict[int, str] = {
    400: "The request does not validate (path, query or body), names a query parameter the "
         "route does not take, or its command line, selector or text does not parse; the "
         "message names what was wrong",
    401: "No token, or a token that is unknown or revoked",
    403: "The user lacks the permission on the device, or a check of the pipeline failed",
    404: "A named object (device, session, command, job, batch, run, user, evidence, "
         "library item) does not exist or is not visible to the user",
    409: "The object is in a state that refuses the request (session closed or expired, "
         "command no longer pending, name taken, audit chain broken)",
    413: "The upload is over the configured size limit",
    503: "The orchestrator cannot reach its Redis; retry once it is back",
    504: "No agent started the command before its expiry (device offline or busy)",
}


class ErrorDetail(BaseModel):
    """One error as it travels in JSON."""

    code: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


class JsonLinesResponse(StreamingResponse):
    """A stream of JSON lines (the audit export)."""

    media_type = "application/x-ndjson"


class BytesResponse(StreamingResponse):
    """A stream of raw bytes (an evidence object)."""

    media_type = "application/octet-stream"


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses, each with ErrorBody."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]}
            for status in statuses}


#: Errors any route may answer (declared on the app).
EVERY_ROUTE = errors(400, 401, 403, 503)

#: A route that answers a command record: 200 with its outcome, 202 while it has none yet.
COMMAND_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": CommandRecord, "description": "The command's record with its outcome"},
    202: {"model": CommandRecord,
          "description": "The command's record without an outcome yet: held for approval, or "
                         "running in the background"},
}
#: A route that answers a command record, always final or as it stands (200).
COMMAND_RECORD: dict[int | str, dict[str, Any]] = {
    200: {"model": CommandRecord, "description": "The command's record"},
}


def document_errors(app: FastAPI) -> None:
    """Make `app`'s OpenAPI document say what the app answers: 400 (ErrorBody) where FastAPI
    would say 422, 404 on every route that names an object in its path, and every error as
    JSON (FastAPI gives them the media type of a route's streamed success)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if responses.pop("422", None) is not None:
                    responses["400"] = _error_response(400)
                if "{" in path:
                    responses.setdefault("404", _error_response(404))
                for status in responses:
                    # Errors are JSON even where success streams another type.
                    if int(status) in ERROR_MEANINGS:
                        responses[status] = _error_response(int(status))
        components = schema.get("components", {}).get("schemas", {})
        for name in _FASTAPI_VALIDATION:
            components.pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error_response(status: int) -> dict[str, Any]:
    return {"description": ERROR_MEANINGS[status],
            "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}
