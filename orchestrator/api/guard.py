"""What every HTTP route declares: its check, as a FastAPI dependency run by the one runner.

`Guards(plane).requires(PERM, at_session)` is a dependency that authenticates the bearer
token, finds the device the route is about and checks the permission there, through
`Pipeline.run` (so allows and denials are audited there, never by the route). An open route
says why with `Guards.open("…")`. `route_check(route)` tells which check a route declared;
a test walks the route table with it.
"""

# No `from __future__ import annotations`: FastAPI must see the dependency's real types.

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import Request as HttpRequest
from fastapi import Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import Route

from orchestrator.audit.log import AuditEntry
from orchestrator.plane import ControlPlane
from orchestrator.policies.checks import load_command, load_session, route_pipeline
from orchestrator.policies.model import PERM_VIEW
from orchestrator.policies.pipeline import Check, Request
from orchestrator.policies.rbac import is_allowed
from orchestrator.state.devices import Device
from tasks.errors import UnknownDeviceError

#: Attribute naming the check a guard dependency stands for.
CHECK_ATTR = "lr_route_check"


#: The API's one authentication scheme, `Authorization: Bearer <token>`: declared in the
#: OpenAPI document (so /docs has "Authorize") by every route that requires it; a missing or
#: other header reads as no token, and the pipeline's `authenticate` check denies.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="An API token: `lr admin init` prints the first admin's, "
    "`lr admin token create USER` makes more.",
    auto_error=False,
)


def located_device(req: Request) -> None:
    """The request's device as registered; one no longer registered counts as untagged, so
    only grants that are not scoped to groups cover it."""
    assert req.device_id is not None
    try:
        req.device = req.plane.devices.get(req.device_id)
    except UnknownDeviceError:
        req.device = Device(id=req.device_id, online=False, last_seen=None)


def at_device(req: Request) -> None:
    """The route is about the device in its path."""
    located_device(req)


def at_session(req: Request) -> None:
    """The route is about the session in its path, so about that session's device."""
    load_session(req)
    located_device(req)


def at_command(req: Request) -> None:
    """The route is about the command in its path, so about that command's device."""
    load_command(req)
    located_device(req)


def everywhere(req: Request) -> None:
    """The route reveals something of every device (the whole audit chain): only grants
    not scoped to groups cover it."""
    req.device = Device(id="(every device)", online=False, last_seen=None)


def entry_device(entry: AuditEntry) -> str | None:
    """The device an audit entry is about, if it names one."""
    device = entry.details.get("device")
    return device if isinstance(device, str) and device else None


class Guards:
    """Route dependencies bound to one control plane."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def requires(self, permission: str | None, locate: Check | None = None, *,
                 audited: bool = True) -> Callable[..., Request]:
        """Authenticate, then hold `permission` (on the device `locate` finds, if given).

        `permission=None`: authenticated only (the route's body runs the full pipeline of
        its action). `audited=False` for routes whose action writes its own outcome entry.
        """
        pipeline = route_pipeline(permission, locate, audited=audited)
        plane = self.plane

        def check_route(
            request: HttpRequest,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
        ) -> Request:
            ids = request.path_params
            token = credentials.credentials if credentials is not None else None
            req = Request(plane, target=request.url.path, token=token,
                          session_id=ids.get("session_id"), device_id=ids.get("device_id"),
                          command_id=ids.get("command_id"))
            return pipeline.check(req)

        where = f" on {locate.__name__.removeprefix('at_')}" if locate else ""
        setattr(check_route, CHECK_ATTR, f"{permission or 'authenticated'}{where}")
        return check_route

    def open(self, why: str) -> Callable[[], None]:
        """An open route, saying why it needs no check."""

        def open_route() -> None:
            return None

        setattr(open_route, CHECK_ATTR, f"open: {why}")
        return open_route


class Scope:
    """Which devices a request's user may see something of, with `permission` (default view).

    Device tags are read once per request. A device no longer registered, and anything that
    names no device, is covered only by grants not scoped to groups.
    """

    def __init__(self, req: Request, permission: str = PERM_VIEW) -> None:
        self.plane = req.plane
        self.grants = req.need_user().grants
        self.permission = permission
        self._tags: dict[str, list[str]] | None = None

    def covers(self, device_id: str | None) -> bool:
        """Whether the user holds the permission on `device_id`."""
        if self._tags is None:
            self._tags = {d.id: d.tags for d in self.plane.devices.list()}
        tags = self._tags.get(device_id, []) if device_id else []
        return is_allowed(self.plane.policies.policy, self.grants, self.permission, tags)

    def only(self, items: Iterable[Any], device_of: Callable[[Any], str | None]) -> list[Any]:
        """The items whose device the user is covered on."""
        return [item for item in items if self.covers(device_of(item))]


def route_check(route: Route) -> str | None:
    """The check a route declared (through a guard dependency, or on a plain route's
    endpoint), or None if it declared none."""
    if not isinstance(route, APIRoute):
        declared = getattr(route.endpoint, CHECK_ATTR, None)
        return None if declared is None else str(declared)
    for dependant in route.dependant.dependencies:
        declared = getattr(dependant.call, CHECK_ATTR, None)
        if declared is not None:
            return str(declared)
    return None
