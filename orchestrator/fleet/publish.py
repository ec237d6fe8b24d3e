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


def task_message(app: Celery, task_name: str, task_id: str, args: list[Any], queue: str,
                 expires_s: float, argsrepr: str) -> str:
    """The JSON kombu's Redis transport stores for one task sent to `queue` (no exchange)."""
    message = app.amqp.create_task_message(
        task_id, task_name, args, {}, expires=expires_s, argsrepr=argsrepr, kwargsrepr="{}")
    content_type, encoding, body = dumps(message.body, serializer="json")
    raw = body if isinstance(body, bytes) else body.encode(encoding)
    properties = {
        **message.properties,
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
        "headers": message.headers,
        "properties": properties,
    })


def stage_publish(pipe: Any, queue: str, message: str) -> None:
    """Queue the message on `pipe` where the device's agent reads its queue (priority 0)."""
    pipe.lpush(queue, message)
