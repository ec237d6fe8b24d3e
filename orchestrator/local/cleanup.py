"""Remove what a run left in Redis: keys under a prefix, a device's queue."""

from __future__ import annotations

import redis


def delete_matching(client: redis.Redis, pattern: str) -> int:
    """Delete every key matching the glob `pattern`; return how many were deleted."""
    deleted = 0
    for key in client.scan_iter(match=pattern, count=1000):
        deleted += int(client.delete(key))
    return deleted


def delete_device_queue(client: redis.Redis, queue: str) -> int:
    """Delete a device queue's keys: the queue (and its priority lists) and kombu's bindings of
    it (`_kombu.binding.QUEUE`, `_kombu.binding_permanent.QUEUE`), which outlive the queue."""
    return (delete_matching(client, f"{queue}*")
            + delete_matching(client, f"_kombu.binding*.{queue}"))


def delete_results(client: redis.Redis, command_ids: list[str]) -> int:
    """Delete the result-backend entries (`celery-task-meta-ID`) of these commands: they live
    outside any key prefix (until `result_expires`)."""
    deleted = 0
    for start in range(0, len(command_ids), 1000):
        chunk = command_ids[start:start + 1000]
        deleted += int(client.delete(*[f"celery-task-meta-{c}" for c in chunk]))
    return deleted
