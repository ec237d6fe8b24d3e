"""Build and run Flower on our broker: basic auth, read-only routes, content-free task state.

Flower normally starts as `celery flower` and reads `FLOWER_*` variables and a config file;
`lr flower` builds it here instead, so nothing outside these settings can switch a route or
the authentication back on.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.backends.base import DisabledBackend
from flower.app import Flower
from flower.events import Events
from flower.inspector import Inspector
from flower.options import default_options
from flower.urls import settings as flower_settings
from tornado.ioloop import IOLoop

from orchestrator.flower.routes import lay_over
from tasks.app import make_celery_app
from tasks.event_content import withhold_content

log = logging.getLogger(__name__)

#: Inspection Flower sends a worker, without `conf`: agents refuse (and audit) that one, and a
#: worker's configuration is nothing an operator needs from Flower.
INSPECT_METHODS = tuple(m for m in Inspector.inspect_methods if m != "conf")
#: Flower reads this from the environment on every request: without authentication it opens
#: the API to any origin. `lr flower` never does.
UNAUTHENTICATED_API_VAR = "FLOWER_UNAUTHENTICATED_API"


@dataclass(frozen=True)
class FlowerConfig:
    """What `lr flower` runs with."""

    redis_url: str
    address: str
    port: int
    #: `user:password` pairs; empty only with `--no-auth` on a loopback address.
    basic_auth: tuple[str, ...]


class ContentFreeEvents(Events):  # type: ignore[misc]
    """Flower's event capture, each event's fields passed through `withhold_content` first:
    whatever a worker sends (an agent, another worker on the broker), Flower keeps no result,
    traceback or argument of it."""

    def on_event(self, event: dict[str, Any]) -> None:
        super().on_event(withhold_content(event))


def flower_celery_app(redis_url: str) -> Celery:
    """A Celery app on the broker only: no result backend, so nothing in Flower reads one."""
    app = make_celery_app(redis_url, name="lr-flower")
    app.conf.result_backend = None
    if not isinstance(app.backend, DisabledBackend):
        raise RuntimeError("Flower's Celery app must have no result backend")
    return app


def build_flower(config: FlowerConfig) -> Flower:
    """A Flower application for `config`, its routes laid over, not yet listening."""
    os.environ.pop(UNAUTHENTICATED_API_VAR, None)
    options = default_options
    options.address = config.address
    options.port = config.port
    options.basic_auth = list(config.basic_auth)
    options.auth = ""
    options.read_only = True
    # Agents send task events themselves and refuse (and audit) enable_events broadcasts.
    options.enable_events = False
    options.persistent = False
    options.url_prefix = ""
    options.unix_socket = ""
    options.debug = False
    capp = flower_celery_app(config.redis_url)
    io_loop = IOLoop.current()
    events = ContentFreeEvents(
        capp, io_loop=io_loop, db=options.db, persistent=False, enable_events=False,
        state_save_interval=0, max_workers_in_memory=options.max_workers,
        max_tasks_in_memory=options.max_tasks)
    app = Flower(options=options, capp=capp, events=events, io_loop=io_loop,
                 **dict(flower_settings, debug=False))
    app.inspector.inspect_methods = INSPECT_METHODS
    lay_over(app)
    return app


def run_flower(config: FlowerConfig, announce: Any = None) -> None:
    """Listen and serve until SIGTERM or Ctrl-C; `announce(port)` once listening."""
    app = build_flower(config)
    port = app.start_http_server()
    if announce is not None:
        announce(port)

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping Flower", signum)
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        app.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        app.stop()
