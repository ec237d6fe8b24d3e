"""The device registry as the orchestrator sees it: what agents registered and whether they live."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import redis
from kombu.transport.redis import PRIORITY_STEPS
from pydantic import BaseModel

from orchestrator.policies.model import TAG_RE
from orchestrator.state.reads import Reader
from tasks import clock
from tasks.errors import UnknownDeviceError, UsageError
from tasks.keys import Keys
from tasks.queues import queue_for, queue_keys, validate_device_id
from tasks.replies import as_text

#: Modes a device may be isolated in (see tasks.commands.isolation).
ISOLATION_MODES = ("full", "selective")
#: Hash fields that describe an isolation in place, dropped on release.
_ISOLATION_DETAILS = ("isolated_since", "isolated_by", "isolation_allow", "isolation_table",
                      "isolation_checked_at")


class Device(BaseModel):
    """One endpoint with an agent."""

    id: str
    online: bool
    last_seen: float | None
    platform: str | None = None
    hostname: str | None = None
    agent_version: str | None = None
    registered_at: float | None = None
    #: `none`, or the mode of the isolation in place (`full`, `selective`).
    isolation: str = "none"
    #: When the device was isolated, and by whom (None when it is not).
    isolated_since: float | None = None
    isolated_by: str | None = None
    #: Destinations a selective isolation still lets through.
    isolation_allow: list[str] = []
    #: What the agent's heartbeat found of its firewall table while isolated: `in_place`,
    #: `missing` (flushed, or the endpoint rebooted: NOT isolated), `unknown`; None: not yet.
    isolation_table: str | None = None
    tags: list[str] = []


class DeviceRegistry:
    """Reads `lr:device:<id>` hashes written by agents."""

    def __init__(self, client: redis.Redis, keys: Keys, offline_after_s: float) -> None:
        self.client = client
        self.keys = keys
        self.offline_after_s = offline_after_s

    def get(self, device_id: str, reader: Reader | None = None) -> Device:
        """The device, or UnknownDeviceError (InvalidDeviceIdError for a malformed id);
        `reader`: a request's prefetched reads (state.reads), else this registry's client."""
        validate_device_id(device_id)
        raw = (reader or self.client).hgetall(self.keys.device(device_id))
        if not raw:
            raise UnknownDeviceError(
                f"unknown device {device_id!r}",
                hint="run 'lr devices' to see registered devices; start lr-agent on the endpoint",
            )
        return self._to_device(device_id, {as_text(k): as_text(v) for k, v in raw.items()})

    def set_isolation(self, device_id: str, mode: str, by: str,
                      allow: Sequence[str] = ()) -> Device:
        """Record that `by` isolated the device (after its agent confirmed it); the device."""
        if mode not in ISOLATION_MODES:
            raise UsageError(f"unknown isolation mode {mode!r}", hint="use full or selective")
        self.get(device_id)
        self.client.hset(self.keys.device(device_id), mapping={
            "isolation": mode, "isolated_since": repr(clock.now()), "isolated_by": by,
            "isolation_allow": ",".join(allow),
            # The agent answered only once `nft` listed the table: in place until a heartbeat
            # finds otherwise.
            "isolation_table": "in_place",
        })
        return self.get(device_id)

    def clear_isolation(self, device_id: str) -> Device:
        """Record that the device is no longer isolated; the device."""
        self.get(device_id)
        key = self.keys.device(device_id)
        pipe = self.client.pipeline()
        pipe.hset(key, "isolation", "none")
        pipe.hdel(key, *_ISOLATION_DETAILS)
        pipe.execute()
        return self.get(device_id)

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

    def set_tags(self, device_id: str, tags: builtins.list[str]) -> Device:
        """Replace the device's tags (its groups, e.g. `group:finance`, `critical`)."""
        self.get(device_id)
        for tag in tags:
            if not TAG_RE.fullmatch(tag) or "," in tag:
                raise UsageError(f"invalid tag {tag!r}",
                                 hint="use 1-64 of [A-Za-z0-9._:/-], e.g. group:finance")
        self.client.hset(self.keys.device(device_id), "tags", ",".join(sorted(set(tags))))
        return self.get(device_id)

    def remove(self, device_id: str) -> int:
        """Forget a decommissioned device: its record, its queue (and the commands waiting
        there: the reaper records them expired) and the kombu binding sets that would
        otherwise stay in Redis for ever. Refused while its agent still reports in (it would
        register again). How many commands were waiting."""
        device = self.get(device_id)
        if device.online:
            raise UsageError(f"device {device_id!r} is online: its agent would register again",
                             hint="stop lr-agent on the endpoint first, then remove it")
        keys = queue_keys(queue_for(device_id))
        pipe = self.client.pipeline(transaction=False)
        for key in keys[:len(PRIORITY_STEPS)]:
            pipe.llen(key)
        waiting = sum(int(n) for n in pipe.execute())
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.device(device_id))
        pipe.srem(self.keys.devices, device_id)
        for key in keys:
            pipe.delete(key)
        pipe.execute()
        return waiting

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
            isolated_since=float(raw["isolated_since"]) if raw.get("isolated_since") else None,
            isolated_by=raw.get("isolated_by") or None,
            isolation_allow=[a for a in raw.get("isolation_allow", "").split(",") if a],
            isolation_table=raw.get("isolation_table") or None,
            tags=[t for t in raw.get("tags", "").split(",") if t],
        )
