"""Round trip and dispatch-rate benchmark: liveresponse's pipeline next to bare Celery, one run.

Prints p50/p99 of 500 sequential `getfilehash` commands through API → pipeline → agent → result
and of 500 bare `send_task` round trips of a task hashing the same file, then the rate of
5,000 commands to 500 device queues through the pipeline next to bare `send_task` of the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import celery
import httpx
import kombu
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import EmbeddedRedis, Settings  # noqa: E402
from orchestrator.api.server import ServerThread  # noqa: E402
from orchestrator.commands.dispatch import Dispatcher  # noqa: E402
from orchestrator.local.agents import LocalAgent  # noqa: E402
from orchestrator.local.cleanup import delete_matching  # noqa: E402
from orchestrator.plane import ControlPlane  # noqa: E402
from orchestrator.state.identity import create_user, issue_token  # noqa: E402
from tasks.queues import queue_for  # noqa: E402
from tasks.signing import generate_keypair  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def timed(n: int, call: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_ours(plane: ControlPlane, url: str, token: str, device: str, subject: Path,
               n: int) -> list[float]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as http:
        session = http.post("/sessions", json={"device_id": device}).json()["id"]
        path = f"/sessions/{session}/commands"
        body = {"line": f"getfilehash {subject}"}

        def one() -> None:
            resp = http.post(path, json=body).json()
            assert resp["status"] == "completed", resp

        timed(20, one)  # warm up
        return timed(n, one)


def bench_bare(redis_url: str, subject: Path, n: int, log: Path) -> list[float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    env = {**os.environ, "LR_REDIS_URL": redis_url,
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    queue = f"bare.{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_worker", "worker", "-Q", queue,
            "--pool", "prefork", "--concurrency", "2", "--without-gossip", "--without-mingle",
            "--loglevel", "WARNING"]
    with open(log, "ab") as out:
        worker = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        os.environ["LR_REDIS_URL"] = redis_url
        from bench.bare_worker import app

        def one() -> None:
            assert app.send_task("bare.hash", args=[str(subject)], queue=queue).get(timeout=60)

        timed(20, one)
        return timed(n, one)
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def bench_dispatch(plane: ControlPlane, token_user: str, n_devices: int,
                   n_commands: int) -> tuple[float, float]:
    """Commands per second: pipeline submit vs bare send_task, same queues, same payload size."""
    from orchestrator.state.identity import get_user

    user = get_user(plane.client, plane.keys, token_user)
    devices = [f"bench-{i:04d}" for i in range(n_devices)]
    pipe = plane.client.pipeline()
    now = time.time() + 3600  # registered and "online" for the run
    for device in devices:
        pipe.hset(plane.keys.device(device), mapping={"id": device, "last_seen": repr(now)})
        pipe.sadd(plane.keys.devices, device)
    pipe.execute()
    sessions = [plane.sessions.open(user.name, d).id for d in devices]
    dispatcher = Dispatcher(plane)
    try:
        start = time.perf_counter()
        records = []
        for i in range(n_commands):
            session = sessions[i % n_devices]
            records.append(dispatcher.submit(user, session, "getfilehash /etc/hostname"))
        ours = n_commands / (time.perf_counter() - start)
        sample = {"command_id": "x" * 32, "device_id": devices[0], "session_id": sessions[0],
                  "user": user.name, "command": "getfilehash",
                  "args": {"path": "/etc/hostname", "algo": "sha256"}, "cwd": None,
                  "issued_at": time.time(), "expires_at": time.time() + 30, "signature": None}
        start = time.perf_counter()
        for i in range(n_commands):
            plane.celery.send_task("lr.command.getfilehash", args=[sample],
                                   queue=queue_for(devices[i % n_devices]), expires=30)
        bare = n_commands / (time.perf_counter() - start)
        return ours, bare
    finally:
        for device in devices:
            delete_matching(plane.client, f"{queue_for(device)}*")
            plane.client.delete(plane.keys.device(device))
            plane.client.srem(plane.keys.devices, device)
        for record in records:
            plane.client.delete(f"celery-task-meta-{record.command_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=500, help="sequential round trips")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--commands", type=int, default=5000)
    opts = parser.parse_args()

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="lrb-", dir="/tmp") as tmp:
        tmpdir = Path(tmp)
        redis_url = os.environ.get("LR_REDIS_URL")
        where = f"Redis server at {redis_url}"
        if not redis_url:
            embedded = stack.enter_context(EmbeddedRedis(tmpdir / "redis"))
            redis_url = embedded.url
            where = f"embedded Redis ({embedded.executable})"
        prefix = f"lrbench-{uuid.uuid4().hex[:6]}"
        stack.callback(_cleanup, redis_url, prefix)
        signing = generate_keypair(tmpdir / "keys")
        settings = Settings(redis_url=redis_url, key_prefix=prefix,
                            signing_key_file=signing.private_path,
                            audit_witness_dir=tmpdir / "audit-witness")
        plane = ControlPlane.from_settings(settings)
        stack.callback(plane.close)
        server = stack.enter_context(ServerThread(plane))
        user = create_user(plane.client, plane.keys, "bench", ["admin"])
        token = issue_token(plane.client, plane.keys, user)
        device = "bench-host"
        stack.enter_context(LocalAgent(device, redis_url, key_prefix=prefix,
                                       public_key_file=signing.public_path,
                                       log_path=tmpdir / "agent.log",
                                       env={"LR_LEDGER_DIR": str(tmpdir / "ledger")}))
        subject = tmpdir / "subject.bin"
        subject.write_bytes(os.urandom(4096))

        info = redis.Redis.from_url(redis_url).info("server")
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}")
        print(f"python {platform.python_version()}, celery {celery.__version__}, "
              f"kombu {kombu.__version__}, redis-py {redis.__version__}, "
              f"redis-server {info['redis_version']}; {where}")
        print()
        ours = bench_ours(plane, server.url, token, device, subject, opts.n)
        bare = bench_bare(redis_url, subject, opts.n, tmpdir / "bare.log")
        print(f"round trip, {opts.n} sequential getfilehash of a 4 KiB file (ms):")
        print(f"  {'':28} {'p50':>8} {'p99':>8}")
        for name, vals in (("liveresponse (HTTP API)", ours), ("bare Celery send_task", bare)):
            print(f"  {name:28} {percentile(vals, 50):8.2f} {percentile(vals, 99):8.2f}")
        ratio = statistics.median(ours) / statistics.median(bare)
        print(f"  p50 ratio ours/bare: {ratio:.2f}x (target <= 1.5x)")
        print()
        rate_ours, rate_bare = bench_dispatch(plane, user.name, opts.devices, opts.commands)
        print(f"dispatch, {opts.commands} commands to {opts.devices} device queues (commands/s):")
        print(f"  liveresponse pipeline        {rate_ours:10.0f}")
        print(f"  bare Celery send_task        {rate_bare:10.0f}")
        print(f"  ratio ours/bare: {rate_ours / rate_bare:.0%} (target >= 50%)")


def _cleanup(redis_url: str, prefix: str) -> None:
    delete_matching(redis.Redis.from_url(redis_url), f"{prefix}:*")


if __name__ == "__main__":
    main()
