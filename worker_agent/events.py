"""The agent's task events carry state, never content: no result, traceback or arguments.

Every event a Celery worker sends (the consumer's `task-received`, the request's
`task-started`/`task-succeeded`/`task-failed`, a task's own `send_event`) goes through the
app's `events.Dispatcher`. The agent's app uses the dispatcher below, which sends each event's
fields through `withhold_content` first. The result backend still holds the result, for the
orchestrator.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher

from tasks.event_content import withhold_content


class ContentFreeDispatcher(EventDispatcher):  # type: ignore[misc]
    """An event dispatcher that withholds results, tracebacks and arguments."""

    def send(self, type: str, *args: Any, **fields: Any) -> Any:  # noqa: A002 - Celery's name
        return super().send(type, *args, **withhold_content(fields))


class AgentEvents(Events):  # type: ignore[misc]
    """`app.events` of an agent: Celery's, with the content-free dispatcher."""

    dispatcher_cls = f"{__name__}:ContentFreeDispatcher"


def use_content_free_events(app: Celery) -> None:
    """Make every event `app` sends content-free; call before anything uses `app.events`."""
    if "events" in vars(app):
        raise RuntimeError("use_content_free_events: the app's events are already in use")
    app.events_cls = AgentEvents
