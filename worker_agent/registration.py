"""Device registration and heartbeats in `lr:device:<id>`."""

from __future__ import annotations

import os
import platform
import socket

import redis
from redis.typing import EncodableT, FieldT

from tasks import clock
from tasks.keys import Keys
from tasks.queues import queue_for
from worker_agent import AGENT_VERSION


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


def beat(client: redis.Redis, keys: Keys, device_id: str) -> None:
    """Refresh the device's `last_seen`."""
    client.hset(keys.device(device_id), "last_seen", repr(clock.now()))


def mark_stopped(client: redis.Redis, keys: Keys, device_id: str) -> None:
    """Say the agent stopped on purpose, so the device shows offline at once."""
    client.hset(keys.device(device_id), mapping={"last_seen": "0", "stopped_at": repr(clock.now())})
