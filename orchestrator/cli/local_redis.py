"""The Redis a local orchestrator uses: LR_REDIS_URL, else the embedded server's socket."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from config.settings import Settings
from tasks.errors import ConfigurationError

#: What to do when there is no Redis at all.
NO_REDIS = (
    "no Redis: start 'lr orchestrator serve' (which starts the embedded one) or set LR_REDIS_URL"
)


def embedded_socket(settings: Settings) -> Path:
    """Where the embedded Redis of `settings.data_dir` listens."""
    return settings.data_dir / "redis.sock"


def redact_url(url: str) -> str:
    """`url` without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def answering_url(url: str) -> str | None:
    """`url` if a Redis answers PING there, else None."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
        return url
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def find_redis_url(settings: Settings) -> str:
    """The configured Redis, else the running embedded one; ConfigurationError when neither."""
    if settings.redis_url:
        if answering_url(settings.redis_url) is None:
            raise ConfigurationError(
                f"cannot reach Redis at {redact_url(settings.redis_url)}",
                hint="check LR_REDIS_URL and that the server runs",
            )
        return settings.redis_url
    sock = embedded_socket(settings)
    if sock.exists():
        url = answering_url(f"unix://{sock}")
        if url is not None:
            return url
    raise ConfigurationError(NO_REDIS)
