"""Query parameters a route does not take are refused, never ignored.

A misspelt filter (`/audit?sesion=S`) would otherwise answer as if no filter were given: every
entry the caller may see instead of one session's. Each route's own parameters (those of its
dependencies included) are what it takes; anything else is a 400 naming what it does take.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

#: The attribute of a route holding the query parameter names it takes, computed on its first
#: request (held by the route itself: routes are not hashable, and an id may be reused).
TAKES_ATTR = "_liveresponse_query_names"


def query_names(route: APIRoute) -> frozenset[str]:
    """The query parameter names `route` reads, its dependencies' included."""
    names: frozenset[str] | None = getattr(route, TAKES_ATTR, None)
    if names is None:
        names = frozenset(_walk(route.dependant))
        setattr(route, TAKES_ATTR, names)
    return names


def _walk(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _walk(sub)
    return names


def unknown_query_error(unknown: list[str], takes: frozenset[str]) -> RequestValidationError:
    """The 400 of query parameters a route does not take, naming those it does."""
    known = ", ".join(sorted(takes)) if takes else "none"
    return RequestValidationError([{
        "loc": ("query", unknown[0]), "type": "unknown_parameter", "input": None,
        "msg": f"unknown query parameter {unknown[0]!r} (this route takes: {known})",
    }])


def refuse_unknown_query(request: Request) -> None:
    """App-wide dependency: a 400 for any query parameter the matched route does not take."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    takes = query_names(route) if isinstance(route, APIRoute) else frozenset()
    unknown = sorted(set(request.query_params) - takes)
    if unknown:
        raise unknown_query_error(unknown, takes)
