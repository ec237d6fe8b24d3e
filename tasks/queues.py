"""Queue naming: each device consumes exactly one queue, `lr.device.<device_id>`."""

from __future__ import annotations

import re

from kombu.transport.redis import PRIORITY_STEPS, Channel

from tasks.errors import InvalidDeviceIdError

#: What a device id may look like: it becomes part of queue and key names.
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Prefix of every device queue.
DEVICE_QUEUE_PREFIX = "lr.device."
#: Queue of control messages to the fleet (not consumed by agents for commands).
CONTROL_QUEUE = "lr.control"


def validate_device_id(device_id: str) -> str:
    """Return `device_id` if it is well formed, else raise InvalidDeviceIdError."""
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise InvalidDeviceIdError(
            f"invalid device id {device_id!r}",
            hint="use 1-64 characters of letters, digits, '.', '_' or '-'",
        )
    return device_id


def queue_for(device_id: str) -> str:
    """The name of the queue that only `device_id`'s agent consumes."""
    return DEVICE_QUEUE_PREFIX + validate_device_id(device_id)


def queue_keys(queue: str) -> list[str]:
    """Every Redis key kombu keeps for a queue sent to with Celery's default routing: the
    list of each priority level and the two binding sets of its exchange (named like the
    queue). The binding sets never expire by themselves: whoever retires a queue deletes them."""
    return [*(f"{queue}{Channel.sep}{p}" if p else queue for p in PRIORITY_STEPS),
            Channel.keyprefix_queue % queue, Channel.keyprefix_binding_permanent % queue]
