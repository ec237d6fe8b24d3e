"""`lr flower`'s route table: only read-only handlers stay reachable; login rules."""

from __future__ import annotations

import inspect

import pytest
from flower.urls import handlers as flower_handlers
from flower.views.error import NotFoundErrorHandler
from flower.views.tasks import TasksDataTable

from orchestrator.cli.flower import credentials
from orchestrator.flower.routes import (
    READ_ONLY_HANDLERS,
    AuthenticatedMetrics,
    RefusedHandler,
    handler_class,
    overriding_routes,
    route_pattern,
)
from tasks.errors import ConfigurationError

#: HTTP methods that change something (Flower's control and task-sending routes use POST).
CHANGING_METHODS = ("post", "put", "patch", "delete")
#: Read-only handlers that answer POST without changing anything, and the last line of their
#: `post`: the tasks page's table asks by POST; an unknown path is a 404 either way.
HARMLESS_POST = {TasksDataTable: "return self.get()",
                 NotFoundErrorHandler: "raise tornado.web.HTTPError(404)"}


def changing_methods(cls: type) -> list[str]:
    """The changing HTTP methods `cls` itself defines (RequestHandler's 405 stubs aside)."""
    return [m for m in CHANGING_METHODS if m in vars_of_hierarchy(cls)]


def test_every_route_that_can_change_something_is_refused() -> None:
    laid = dict(overriding_routes())
    changing = [route for route in flower_handlers
                if changing_methods(handler_class(route))
                and handler_class(route) not in HARMLESS_POST]
    assert len(changing) >= 14  # shutdown, pool ×4, consumers ×2, apply ×3, abort, limits…
    for route in changing:
        assert laid.get(route_pattern(route)) is RefusedHandler, route_pattern(route)


def test_read_only_handlers_answer_get_only() -> None:
    for cls in READ_ONLY_HANDLERS - set(HARMLESS_POST):
        assert not changing_methods(cls), cls
    for cls, last_line in HARMLESS_POST.items():
        assert changing_methods(cls) == ["post"]
        assert inspect.getsource(cls.post).strip().endswith(last_line), cls


def test_the_result_route_and_the_metrics_are_laid_over() -> None:
    laid = dict(overriding_routes())
    assert laid[r"/api/task/result/(.+)"] is RefusedHandler
    assert laid[r"/api/worker/shutdown/(.+)"] is RefusedHandler
    assert laid[r"/api/task/revoke/(.+)"] is RefusedHandler
    assert laid["/metrics"] is AuthenticatedMetrics
    assert r"/api/task/info/(.*)" not in laid


def test_an_unknown_route_of_a_newer_flower_is_refused() -> None:
    class NewShinyHandler:
        pass
    assert overriding_routes([(r"/api/new", NewShinyHandler)]) == [
        (r"/api/new", RefusedHandler)]


def test_a_login_is_required_unless_no_auth_on_loopback() -> None:
    assert credentials("ops:long-password", False, "0.0.0.0") == ("ops:long-password",)
    assert credentials(None, True, "127.0.0.1") == ()
    assert credentials(None, True, "::1") == ()
    for secret, no_auth, address in [(None, False, "127.0.0.1"), (None, True, "0.0.0.0"),
                                     ("ops:short", False, "127.0.0.1"),
                                     ("nocolon", False, "127.0.0.1"),
                                     (":long-password", False, "127.0.0.1"),
                                     ("ops:long-password", True, "10.0.0.5")]:
        with pytest.raises(ConfigurationError):
            credentials(secret, no_auth, address)


def vars_of_hierarchy(cls: type) -> set[str]:
    """Names defined by `cls` or a base below tornado's RequestHandler (which defines all
    HTTP methods as 405 stubs)."""
    import tornado.web

    names: set[str] = set()
    for base in cls.__mro__:
        if base in (tornado.web.RequestHandler, object):
            break
        names |= set(vars(base))
    return names
