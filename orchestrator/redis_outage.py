"""Redis out of reach: what it raises (redis-py, kombu), and the one-line error the API answers."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from kombu.exceptions import OperationalError

from tasks.errors import RedisUnavailableError

#: What a Redis that is down, restarting or unreachable raises, through redis-py or kombu
#: (Celery's publishing side); redis-py's TimeoutError is not a ConnectionError.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError)


def redis_address(url: str | None) -> str:
    """Where Redis is, from its URL: scheme, host and port (or socket path) and database;
    never the user, the password, or any query parameter (redis-py reads `?password=`)."""
    if not url:
        return "(no Redis URL)"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def caused_by_redis(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from or while handling, is Redis being
    unreachable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UNREACHABLE):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def redis_unavailable(url: str | None) -> RedisUnavailableError:
    """The error the API answers while Redis at `url` cannot be reached."""
    return RedisUnavailableError(
        f"the orchestrator cannot reach Redis at {redis_address(url)}",
        hint="check that Redis runs; the orchestrator reconnects by itself once it is back",
    )
