"""Which of Flower's routes `lr flower` serves: the read-only ones; every other one is refused.

Flower's own `--read_only` answers 403 on the routes that send tasks or control workers, but
it is one flag per handler of one version. Here the routes are an allowlist by handler class:
a route of a newer Flower that is not listed is refused too, whatever it does.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from flower.api import BaseApiHandler
from flower.api.tasks import GetQueueLengths, ListTasks, ListTaskTypes, TaskInfo
from flower.api.workers import ListWorkers
from flower.urls import handlers as flower_handlers
from flower.views.auth import LoginHandler, LogoutHandler
from flower.views.broker import BrokerView
from flower.views.error import NotFoundErrorHandler
from flower.views.monitor import Healthcheck, Metrics
from flower.views.tasks import TasksDataTable, TasksView, TaskView
from flower.views.workers import WorkersView, WorkerView

#: The message of a refused route.
REFUSED_MESSAGE = (
    "disabled in liveresponse's Flower: it only watches; commands go through the orchestrator "
    "(lr run), which checks, signs and audits them"
)

#: Handlers that only read Flower's own state (from events and read-only inspection) or the
#: broker's queue lengths. Not here: sending or applying tasks, reading results from a result
#: backend (`/api/task/result`), aborting, revoking, rate and time limits, shutting down and
#: resizing workers, adding and cancelling consumers.
READ_ONLY_HANDLERS: frozenset[type] = frozenset({
    WorkersView, WorkerView, TaskView, TasksView, TasksDataTable, BrokerView,
    ListWorkers, ListTasks, ListTaskTypes, GetQueueLengths, TaskInfo,
    Healthcheck, tornado.web.StaticFileHandler, LoginHandler, LogoutHandler,
    NotFoundErrorHandler,
})


class RefusedHandler(BaseApiHandler):  # type: ignore[misc]
    """Any method: 401 without valid credentials, else 403 with REFUSED_MESSAGE."""

    def prepare(self) -> None:
        super().prepare()  # Flower's 401 when no authentication is configured at all
        if not self.current_user:  # Flower's basic auth raises its 401 here
            raise tornado.web.HTTPError(401)
        raise tornado.web.HTTPError(403, REFUSED_MESSAGE)


class AuthenticatedMetrics(Metrics):  # type: ignore[misc]
    """Flower's Prometheus metrics (device ids, task names, counts) behind the same login."""

    def prepare(self) -> None:
        if not self.current_user:
            raise tornado.web.HTTPError(401)


def handler_class(route: Any) -> type:
    """The handler class of one entry of Flower's route table (a tuple or a `url`)."""
    if isinstance(route, tornado.web.URLSpec):
        return route.handler_class  # type: ignore[no-any-return]
    return route[1]  # type: ignore[no-any-return]


def route_pattern(route: Any) -> str:
    """The path pattern of one entry of Flower's route table."""
    if isinstance(route, tornado.web.URLSpec):
        return str(route.regex.pattern).removesuffix("$")
    return str(route[0])


def overriding_routes(routes: list[Any] | None = None) -> list[tuple[str, type]]:
    """Routes to lay over Flower's own: each route not read-only → RefusedHandler,
    the metrics → AuthenticatedMetrics."""
    out: list[tuple[str, type]] = []
    for route in flower_handlers if routes is None else routes:
        cls = handler_class(route)
        if cls is Metrics:
            out.append((route_pattern(route), AuthenticatedMetrics))
        elif cls not in READ_ONLY_HANDLERS:
            out.append((route_pattern(route), RefusedHandler))
    return out


def lay_over(app: tornado.web.Application) -> list[tuple[str, type]]:
    """Install `overriding_routes` on `app`, ahead of Flower's own; returns what it laid."""
    routes = overriding_routes()
    # add_handlers puts a host rule before the catch-all one that holds Flower's table, and a
    # request that matches none of these paths falls through to Flower's table.
    app.add_handlers(r".*", routes)
    return routes
