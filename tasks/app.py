"""The Celery app factory both sides use: JSON only, events on, one queue per device."""

from __future__ import annotations

from urllib.parse import urlsplit

from celery import Celery

#: How long results stay in the backend (the orchestrator copies what it keeps).
RESULT_EXPIRES_S = 24 * 60 * 60
#: Redis visibility timeout: an unacked message is redelivered after this long. The agent's
#: ledger refuses any second start, so a redelivery never runs a command twice.
VISIBILITY_TIMEOUT_S = 60 * 60


def celery_url(redis_url: str) -> str:
    """Translate a redis-py URL into the one kombu and Celery's backend expect."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return f"redis+socket://{parts.path}"
    return redis_url


def make_celery_app(redis_url: str, name: str = "liveresponse") -> Celery:
    """A Celery app bound to `redis_url` as broker and result backend."""
    url = celery_url(redis_url)
    app = Celery(name, broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Ack on receipt: a command is never started twice, and the ledger backs that up.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        # No task-sent events: they double the cost of every publish; Flower sees tasks from
        # the agents' received/started/succeeded events and queue lengths from the broker.
        task_send_sent_event=False,
        worker_send_task_events=True,
        task_track_started=False,
        result_expires=RESULT_EXPIRES_S,
        result_extended=False,
        result_backend_always_retry=True,
        result_backend_max_retries=10,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        # Agents listen only on their own queue; nothing may fall into the default one.
        task_create_missing_queues=True,
        task_default_queue="lr.unrouted",
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
