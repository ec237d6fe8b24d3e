"""Settings and the embedded Redis bootstrap: the only configuration surface of liveresponse."""

from __future__ import annotations

from config.embedded import EmbeddedRedis, bundled_redis_server, find_redis_server
from config.settings import Settings, get_settings

__all__ = ["EmbeddedRedis", "Settings", "bundled_redis_server", "find_redis_server", "get_settings"]
