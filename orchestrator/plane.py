"""The control plane: one object holding the orchestrator's Redis, Celery app and stores."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery

from config import Settings
from orchestrator.audit import AuditLog
from orchestrator.devices import DeviceRegistry
from orchestrator.sessions import SessionStore
from tasks.app import make_celery_app
from tasks.errors import ConfigurationError
from tasks.keys import Keys
from tasks.state import CommandStateStore


@dataclass
class ControlPlane:
    """Everything a request handler needs, built once from Settings."""

    settings: Settings
    client: redis.Redis
    keys: Keys
    celery: Celery
    audit: AuditLog
    sessions: SessionStore
    devices: DeviceRegistry
    states: CommandStateStore

    @classmethod
    def from_settings(cls, settings: Settings) -> ControlPlane:
        """Connect to `settings.redis_url`; it must be set (callers start any embedded Redis)."""
        if not settings.redis_url:
            raise ConfigurationError("no Redis URL: set LR_REDIS_URL or start the embedded Redis")
        client = redis.Redis.from_url(settings.redis_url)
        keys = Keys(settings.key_prefix)
        return cls(
            settings=settings,
            client=client,
            keys=keys,
            celery=make_celery_app(settings.redis_url, name="lr-orchestrator"),
            audit=AuditLog(client, keys),
            sessions=SessionStore(client, keys, settings),
            devices=DeviceRegistry(client, keys, settings.device_offline_after_s),
            states=CommandStateStore(client, keys),
        )

    def close(self) -> None:
        """Release connections."""
        self.celery.close()
        self.client.close()
