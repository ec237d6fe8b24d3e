"""Publishing many tasks in one Redis round trip: Celery task messages queued on a pipeline.

`Celery.send_task` costs one round trip (and ~0.5 ms of Python) per message. A fleet command
builds each message with Celery's own task-message builder (protocol 2, what the agents'
workers read) and queues the LPUSH that kombu's Redis transport would have sent for it on the
caller's pipeline, beside the commands' records and audit entries: the records and entries are
written before any agent can see its message, and all of it costs one round trip.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from celery import Celery
from kombu.serialization import dumps


class TaskMessages:
    """Messages of one task name and expiry for many ids: Celery's builder runs once, and each
    message takes that template with its own id, arguments and argsrepr (all that differs)."""

    def __init__(self, app: Celery, task_name: str, expires_s: float) -> None:
        template = app.amqp.create_task_message(
            "template", task_name, [], {}, expires=expires_s, argsrepr="", kwargsrepr="{}")
        self.headers: dict[str, Any] = dict(template.headers)
        self.properties: dict[str, Any] = dict(template.properties)
        self.kwargs, self.embed = template.body[1], template.body[2]

    def message(self, task_id: str, args: list[Any], queue: str, argsrepr: str) -> str:
        """The JSON kombu's Redis transport stores for this task sent to `queue`."""
        headers = {**self.headers, "id": task_id, "root_id": task_id, "argsrepr": argsrepr}
        content_type, encoding, body = dumps((args, self.kwargs, self.embed),
                                             serializer="json")
        raw = body if isinstance(body, bytes) else body.encode(encoding)
        properties = {
            **self.properties,
            "correlation_id": task_id,
            "argsrepr": argsrepr,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        return json.dumps({
            "body": base64.b64encode(raw).decode("ascii"),
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": properties,
        })


def stage_publish(pipe: Any, queue: str, message: str) -> None:
    """Queue the message on `pipe` where the device's agent reads its queue (priority 0)."""
    pipe.lpush(queue, message)
