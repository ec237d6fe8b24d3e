"""Remove what a run left in Redis: keys under a prefix, a device's queue and its bindings."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from tasks.queues import queue_for, queue_keys

#: The result backend's key of a task id (Celery's Redis backend).
RESULT_KEY = "celery-task-meta-{}"


def delete_matching(client: redis.Redis, pattern: str) -> int:
    """Delete every key matching the glob `pattern`; return how many were deleted."""
    deleted = 0
    for key in client.scan_iter(match=pattern, count=1000):
        deleted += int(client.delete(key))
    return deleted


def delete_queues(client: redis.Redis, queues: Iterable[str]) -> int:
    """Delete the queues (what waits in them too) and their binding sets; how many keys were
    deleted. One key a command, so it runs on Redis Cluster too."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue):
            pipe.delete(key)
    return sum(int(n) for n in pipe.execute())


def delete_device_queues(client: redis.Redis, device_ids: Iterable[str]) -> int:
    """`delete_queues` of the devices' own queues."""
    return delete_queues(client, (queue_for(d) for d in device_ids))


def delete_results(client: redis.Redis, task_ids: Iterable[str]) -> int:
    """Delete the result backend's keys of `task_ids`; how many were deleted."""
    pipe = client.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.delete(RESULT_KEY.format(task_id))
    return sum(int(n) for n in pipe.execute())
