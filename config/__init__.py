"""Settings and the embedded Redis bootstrap: the only configuration surface of liveresponse."""

from __future__ import annotations

from config.embedded import EmbeddedRedis, find_redis_server
from config.settings import Settings, get_settings

__all__ = ["EmbeddedRedis", "Settings", "find_redis_server", "get_settings"]
