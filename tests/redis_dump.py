"""Everything stored under a key prefix, as bytes: for tests proving a secret is not in Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis


def dump_prefix(client: redis.Redis, prefix: str) -> bytes:
    """Every key name and value under `prefix`, whatever the key's type."""
    parts: list[object] = []
    readers: dict[bytes, Callable[[bytes], object]] = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"set": client.smembers,
        b"zset": lambda key: client.zrange(key, 0, -1),
        b"list": lambda key: client.lrange(key, 0, -1),
        b"stream": client.xrange,
    }
    for key in client.scan_iter(match=f"{prefix}:*"):
        kind: Any = client.type(key)
        parts += [key, readers[kind](key)]
    return repr(parts).encode()
