"""Dispatch benchmark: commands queued per second through the pipeline next to bare Celery,
at 10, 1,000 and 10,000 registered devices, and 5,000 commands to 500 device queues.

`Dispatcher.submit` (every check, the record, the signed `requested` audit entry, then
`send_task`) against a bare `send_task` of an envelope of the same size to the same queues,
in one process, no agents consuming. Each figure is printed next to its baseline from the same
run; everything the run created (devices, sessions, records, queues, their kombu bindings,
result keys) is deleted at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import bench_redis, describe_machine  # noqa: E402
from config import Settings  # noqa: E402
from orchestrator.commands.dispatch import Dispatcher  # noqa: E402
from orchestrator.local.cleanup import (  # noqa: E402
    delete_device_queues,
    delete_matching,
    delete_results,
)
from orchestrator.plane import ControlPlane  # noqa: E402
from orchestrator.state.identity import User, create_user  # noqa: E402
from tasks.app import make_celery_app  # noqa: E402
from tasks.queues import queue_for  # noqa: E402
from tasks.signing import generate_keypair  # noqa: E402

#: Device counts of the scaling run.
SCALES = (10, 1000, 10000)
#: Per-command cost may grow by at most this much from the smallest to the largest fleet.
FLAT_WITHIN = 0.20


def register(plane: ControlPlane, user: User, devices: list[str]) -> list[str]:
    """Register `devices` as online and open a session on each; the session ids."""
    now = time.time() + 3600  # "online" for the run
    pipe = plane.client.pipeline(transaction=False)
    for device in devices:
        pipe.hset(plane.keys.device(device), mapping={"id": device, "last_seen": repr(now)})
        pipe.sadd(plane.keys.devices, device)
    pipe.execute()
    return [plane.sessions.open(user.name, d).id for d in devices]


def run_ours(plane: ControlPlane, user: User, sessions: list[str],
             n: int) -> tuple[float, list[str]]:
    """Seconds to submit `n` commands round-robin over the sessions; the command ids."""
    dispatcher = Dispatcher(plane)
    ids = []
    start = time.perf_counter()
    for i in range(n):
        ids.append(dispatcher.submit(user, sessions[i % len(sessions)],
                                     "getfilehash /etc/hostname").command_id)
    return time.perf_counter() - start, ids


def run_bare(redis_url: str, user: User, devices: list[str], sessions: list[str],
             n: int) -> tuple[float, list[str]]:
    """Seconds for `n` bare send_task of an envelope-sized payload to the same queues, from a
    Celery app of its own (its own queue-declaration cache, as a fresh process has)."""
    app = make_celery_app(redis_url, name="bare-dispatch")
    sample = {"command_id": "x" * 32, "device_id": devices[0], "session_id": sessions[0],
              "user": user.name, "command": "getfilehash",
              "args": {"path": "/etc/hostname", "algo": "sha256"}, "cwd": None,
              "issued_at": time.time(), "expires_at": time.time() + 30,
              "signature": "s" * 88}
    ids = []
    try:
        start = time.perf_counter()
        for i in range(n):
            ids.append(app.send_task("lr.command.getfilehash", args=[sample],
                                     queue=queue_for(devices[i % len(devices)]),
                                     expires=30).id)
        return time.perf_counter() - start, ids
    finally:
        app.close()


def measure(plane: ControlPlane, redis_url: str, user: User, n_devices: int,
            n_commands: int) -> tuple[float, float]:
    """(ours, bare) in commands/s for one fleet size; everything created is deleted."""
    tag = uuid.uuid4().hex[:4]
    devices = [f"bench-{tag}-{i:05d}" for i in range(n_devices)]
    sessions = register(plane, user, devices)
    ours_ids: list[str] = []
    bare_ids: list[str] = []
    try:
        # Bare first, then ours: each declares every queue once in its own app.
        bare_s, bare_ids = run_bare(redis_url, user, devices, sessions, n_commands)
        delete_device_queues(plane.client, devices)
        ours_s, ours_ids = run_ours(plane, user, sessions, n_commands)
        return n_commands / ours_s, n_commands / bare_s
    finally:
        delete_device_queues(plane.client, devices)
        delete_results(plane.client, [*ours_ids, *bare_ids])
        pipe = plane.client.pipeline(transaction=False)
        for device in devices:
            pipe.delete(plane.keys.device(device))
        pipe.srem(plane.keys.devices, *devices)
        pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--scales", type=int, nargs="*", default=list(SCALES),
                        help="fleet sizes of the scaling run (each device addressed once, "
                        "at least 2,000 commands)")
    opts = parser.parse_args()
    with ExitStack() as stack:
        # Removed last: an embedded Redis's socket lives in it until the clean-up ran.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="lrb-", dir="/tmp"))
        tmpdir = Path(tmp)
        redis_url, where = bench_redis(stack, tmpdir / "redis")
        prefix = f"lrbench-{uuid.uuid4().hex[:6]}"
        client = redis.Redis.from_url(redis_url)
        stack.callback(delete_matching, client, f"{prefix}:*")
        signing = generate_keypair(tmpdir / "keys")
        plane = ControlPlane.from_settings(Settings(
            redis_url=redis_url, key_prefix=prefix, signing_key_file=signing.private_path,
            audit_witness_dir=tmpdir / "audit-witness"))
        stack.callback(plane.close)
        user = create_user(plane.client, plane.keys, "bench", ["admin"])
        describe_machine(redis_url, where)

        ours, bare = measure(plane, redis_url, user, opts.devices, opts.commands)
        print(f"dispatch, {opts.commands} commands to {opts.devices} device queues "
              "(commands/s):")
        print(f"  liveresponse pipeline        {ours:10.0f}")
        print(f"  bare Celery send_task        {bare:10.0f}")
        print(f"  ratio ours/bare: {ours / bare:.0%} (target >= 50%)")
        print()
        print("dispatch by fleet size, each device addressed (ms per command):")
        print(f"  {'devices':>8} {'commands':>9} {'ours':>8} {'bare':>8} {'ours/bare':>10}")
        per_command = []
        for n_devices in opts.scales:
            n = max(2000, n_devices)
            ours, bare = measure(plane, redis_url, user, n_devices, n)
            per_command.append(1000 / ours)
            print(f"  {n_devices:8d} {n:9d} {1000 / ours:8.3f} {1000 / bare:8.3f} "
                  f"{ours / bare:9.0%}")
        if len(per_command) > 1:
            growth = per_command[-1] / per_command[0] - 1
            print(f"  ours per command, {opts.scales[-1]} vs {opts.scales[0]} devices: "
                  f"{growth:+.0%} (target within {FLAT_WITHIN:.0%}; ratio target >= 50%)")


if __name__ == "__main__":
    main()
