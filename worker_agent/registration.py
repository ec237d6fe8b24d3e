"""Device registration and heartbeats in `lr:device:<id>`."""

from __future__ import annotations

import logging
import os
import platform
import socket
from collections.abc import Callable

import redis
from redis.typing import EncodableT, FieldT

from tasks import clock
from tasks.keys import Keys
from tasks.queues import queue_for
from worker_agent import AGENT_VERSION

log = logging.getLogger(__name__)


def describe_endpoint(device_id: str) -> dict[str, str]:
    """What the agent says about its endpoint when it registers."""
    return {
        "id": device_id,
        "platform": platform.system().lower(),
        "os_release": platform.release(),
        "hostname": socket.gethostname(),
        "agent_version": AGENT_VERSION,
        "agent_pid": str(os.getpid()),
        "queue": queue_for(device_id),
    }


def register_device(client: redis.Redis, keys: Keys, device_id: str) -> None:
    """Record the endpoint and its first heartbeat."""
    # redis-py types hash fields with invariant keys: a dict[str, str] does not pass as a mapping.
    info: dict[FieldT, EncodableT] = {k: v for k, v in describe_endpoint(device_id).items()}
    info["registered_at"] = repr(clock.now())
    info["last_seen"] = info["registered_at"]
    pipe = client.pipeline()
    pipe.hset(keys.device(device_id), mapping=info)
    pipe.sadd(keys.devices, device_id)
    pipe.execute()


def beat(client: redis.Redis, keys: Keys, device_id: str,
         check_isolation: Callable[[], str] | None = None) -> bool:
    """Refresh the device's `last_seen`; register it again when Redis lost its record (a
    wiped or replaced Redis): True then. While the device is recorded isolated,
    `check_isolation()` says whether the firewall table is really in place (`isolation_table`)."""
    key = keys.device(device_id)
    pipe = client.pipeline()
    pipe.hget(key, "registered_at")
    pipe.sismember(keys.devices, device_id)
    pipe.hget(key, "isolation")
    registered_at, listed, isolation = pipe.execute()
    if not registered_at or not listed:
        log.warning("device %s was not registered in Redis any more: registering again",
                    device_id)
        register_device(client, keys, device_id)
        return True
    fields: dict[FieldT, EncodableT] = {"last_seen": repr(clock.now())}
    if check_isolation is not None and isolation not in (None, b"none"):
        fields["isolation_table"] = check_isolation()
        fields["isolation_checked_at"] = fields["last_seen"]
    client.hset(key, mapping=fields)
    return False


def mark_stopped(client: redis.Redis, keys: Keys, device_id: str) -> None:
    """Say the agent stopped on purpose, so the device shows offline at once."""
    client.hset(keys.device(device_id), mapping={"last_seen": "0", "stopped_at": repr(clock.now())})
