"""Remove what a run left in Redis: keys under a prefix, a device's queue."""

from __future__ import annotations

import redis


def delete_matching(client: redis.Redis, pattern: str) -> int:
    """Delete every key matching the glob `pattern`; return how many were deleted."""
    deleted = 0
    for key in client.scan_iter(match=pattern, count=1000):
        deleted += int(client.delete(key))
    return deleted
