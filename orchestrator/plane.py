"""The control plane: one object holding the orchestrator's Redis, Celery app and stores."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery

from config import Settings
from orchestrator.audit.log import AuditLog
from orchestrator.audit.setup import orchestrator_audit_log
from orchestrator.policies.store import PolicyStore
from orchestrator.state.devices import DeviceRegistry
from orchestrator.state.reads import ReadHints
from orchestrator.state.sessions import SessionStore
from tasks.app import make_celery_app
from tasks.errors import ConfigurationError
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, generate_keypair
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
    signer: Signer
    policies: PolicyStore
    #: Which user a token names and which device a session is on, once seen (state.reads).
    hints: ReadHints

    @classmethod
    def from_settings(cls, settings: Settings) -> ControlPlane:
        """Connect to `settings.redis_url`; it must be set (callers start any embedded Redis)."""
        if not settings.redis_url:
            raise ConfigurationError("no Redis URL: set LR_REDIS_URL or start the embedded Redis")
        signer = Signer.from_file(settings.signing_key_path())
        client = redis.Redis.from_url(settings.redis_url)
        keys = Keys(settings.key_prefix)
        return cls(
            settings=settings,
            client=client,
            keys=keys,
            celery=make_celery_app(settings.redis_url, name="lr-orchestrator"),
            audit=orchestrator_audit_log(settings, client, keys, signer),
            sessions=SessionStore(client, keys, settings),
            devices=DeviceRegistry(client, keys, settings.device_offline_after_s),
            states=CommandStateStore(client, keys),
            signer=signer,
            policies=PolicyStore(client, keys),
            hints=ReadHints(client, keys),
        )

    def close(self) -> None:
        """Release connections and the audit witness."""
        self.celery.close()
        self.audit.close()
        self.client.close()


def ensure_signing_keys(settings: Settings, *, embedded: bool) -> KeyPair | None:
    """Create the signing keys at their default place for a local setup; None if not needed.

    Only with the embedded Redis and no key file configured: a setup with an external Redis
    has agents elsewhere that must be given the public key, so its keys are made on purpose
    with `lr admin keys init` (`from_settings` says so when they are missing).
    """
    if not embedded or settings.signing_key_file is not None:
        return None
    if settings.signing_key_path().exists():
        return None
    return generate_keypair(settings.keys_dir())
