"""The device registry as the orchestrator sees it: what agents registered and whether they live."""

from __future__ import annotations

import redis
from pydantic import BaseModel

from tasks import clock
from tasks.errors import UnknownDeviceError
from tasks.keys import Keys
from tasks.queues import validate_device_id
from tasks.replies import as_text


class Device(BaseModel):
    """One endpoint with an agent."""

    id: str
    online: bool
    last_seen: float | None
    platform: str | None = None
    hostname: str | None = None
    agent_version: str | None = None
    registered_at: float | None = None
    isolation: str = "none"
    tags: list[str] = []


class DeviceRegistry:
    """Reads `lr:device:<id>` hashes written by agents."""

    def __init__(self, client: redis.Redis, keys: Keys, offline_after_s: float) -> None:
        self.client = client
        self.keys = keys
        self.offline_after_s = offline_after_s

    def get(self, device_id: str) -> Device:
        """The device, or UnknownDeviceError (InvalidDeviceIdError for a malformed id)."""
        validate_device_id(device_id)
        raw = self.client.hgetall(self.keys.device(device_id))
        if not raw:
            raise UnknownDeviceError(
                f"unknown device {device_id!r}",
                hint="run 'lr devices' to see registered devices; start lr-agent on the endpoint",
            )
        return self._to_device(device_id, {as_text(k): as_text(v) for k, v in raw.items()})

    def list(self) -> list[Device]:
        """Every registered device, sorted by id."""
        ids = sorted(as_text(d) for d in self.client.smembers(self.keys.devices))
        pipe = self.client.pipeline()
        for device_id in ids:
            pipe.hgetall(self.keys.device(device_id))
        out = []
        for device_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                fields = {as_text(k): as_text(v) for k, v in raw.items()}
                out.append(self._to_device(device_id, fields))
        return out

    def _to_device(self, device_id: str, raw: dict[str, str]) -> Device:
        last_seen = float(raw["last_seen"]) if raw.get("last_seen") else None
        online = bool(last_seen) and clock.now() - (last_seen or 0) <= self.offline_after_s
        return Device(
            id=device_id,
            online=online,
            last_seen=last_seen or None,
            platform=raw.get("platform"),
            hostname=raw.get("hostname"),
            agent_version=raw.get("agent_version"),
            registered_at=float(raw["registered_at"]) if raw.get("registered_at") else None,
            isolation=raw.get("isolation", "none"),
            tags=[t for t in raw.get("tags", "").split(",") if t],
        )
