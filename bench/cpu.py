"""CPU time a benchmark's processes spend, so its figures say where a round trip's time goes.

On a machine with few cores, every process of a round trip (client, orchestrator, agent,
Redis) waits for a core in turn: the CPU each spends per round trip explains its latency
better than the milliseconds alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil
import redis


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` and its children (a worker and its pool)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (its own `INFO cpu`, so a remote one counts too)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds at one moment: this thread (the client), this process, the worker, Redis."""

    client_s: float
    process_s: float
    worker_s: float
    redis_s: float

    @classmethod
    def take(cls, worker_pid: int, client: redis.Redis) -> CpuSample:
        return cls(time.thread_time(), time.process_time(), tree_cpu_s(worker_pid),
                   redis_cpu_s(client))


def per_call_ms(before: CpuSample, after: CpuSample, calls: int) -> dict[str, float]:
    """ms of CPU per call: the client (the calling thread), the rest of this process (an
    in-process orchestrator's threads), the worker's processes and Redis."""
    client = after.client_s - before.client_s
    return {
        "client": 1000 * client / calls,
        "orchestrator": 1000 * max(after.process_s - before.process_s - client, 0.0) / calls,
        "worker": 1000 * (after.worker_s - before.worker_s) / calls,
        "redis": 1000 * (after.redis_s - before.redis_s) / calls,
    }
