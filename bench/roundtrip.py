"""Round-trip benchmark: liveresponse's pipeline next to bare Celery, one run.

Prints p50/p99 of 500 sequential `getfilehash` commands through API → pipeline → agent → result
and of 500 bare `send_task` round trips of a task hashing the same file, to a bare worker with
the agent's pool (`LR_AGENT_POOL`, default threads), and the CPU each process spends per round
trip. The dispatch rate is `bench/dispatch.py`. Every key the run created is deleted at the
end (results and bindings too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import CpuSample, per_call_ms  # noqa: E402
from bench.target import bench_redis, describe_machine  # noqa: E402
from config import Settings  # noqa: E402
from orchestrator.api.server import ServerThread  # noqa: E402
from orchestrator.local.agents import LocalAgent  # noqa: E402
from orchestrator.local.cleanup import delete_matching, delete_queues, delete_results  # noqa: E402
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


def measured(n: int, call: Callable[[], object], worker_pid: int,
             client: redis.Redis) -> tuple[list[float], dict[str, float]]:
    """`n` timed calls after 20 to warm up, and the CPU each cost, by process."""
    timed(20, call)
    before = CpuSample.take(worker_pid, client)
    ms = timed(n, call)
    return ms, per_call_ms(before, CpuSample.take(worker_pid, client), n)


def bench_ours(plane: ControlPlane, url: str, token: str, agent: LocalAgent, subject: Path,
               n: int, task_ids: list[str]) -> tuple[list[float], dict[str, float]]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as http:
        session = http.post("/sessions", json={"device_id": agent.device_id}).json()["id"]
        path = f"/sessions/{session}/commands"
        body = {"line": f"getfilehash {subject}"}

        def one() -> None:
            resp = http.post(path, json=body).json()
            assert resp["status"] == "completed", resp
            task_ids.append(resp["command_id"])

        return measured(n, one, agent.pid, plane.client)


def bench_bare(redis_url: str, subject: Path, n: int, log: Path, task_ids: list[str],
               queues: list[str], pool: str) -> tuple[list[float], dict[str, float]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    env = {**os.environ, "LR_REDIS_URL": redis_url,
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    queue = f"bare.{uuid.uuid4().hex[:6]}"
    queues.append(queue)
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_worker", "worker", "-Q", queue,
            "--pool", pool, "--concurrency", "2", "--without-gossip", "--without-mingle",
            "--loglevel", "WARNING"]
    with open(log, "ab") as out:
        worker = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        os.environ["LR_REDIS_URL"] = redis_url
        from bench.bare_worker import app

        def one() -> None:
            result = app.send_task("bare.hash", args=[str(subject)], queue=queue)
            task_ids.append(result.id)
            assert result.get(timeout=60)

        return measured(n, one, worker.pid, redis.Redis.from_url(redis_url))
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=500, help="sequential round trips")
    opts = parser.parse_args()

    with ExitStack() as stack:
        # Removed last: an embedded Redis's socket lives in it until the clean-up ran.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="lrb-", dir="/tmp"))
        tmpdir = Path(tmp)
        redis_url, where = bench_redis(stack, tmpdir / "redis")
        prefix = f"lrbench-{uuid.uuid4().hex[:6]}"
        task_ids: list[str] = []
        queues = [queue_for("bench-host")]
        stack.callback(_cleanup, redis_url, prefix, task_ids, queues)
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
        agent = stack.enter_context(LocalAgent(device, redis_url, key_prefix=prefix,
                                       public_key_file=signing.public_path,
                                       log_path=tmpdir / "agent.log",
                                       env={"LR_LEDGER_DIR": str(tmpdir / "ledger")}))
        subject = tmpdir / "subject.bin"
        subject.write_bytes(os.urandom(4096))

        describe_machine(redis_url, where)
        ours, ours_cpu = bench_ours(plane, server.url, token, agent, subject, opts.n, task_ids)
        bare, bare_cpu = bench_bare(redis_url, subject, opts.n, tmpdir / "bare.log", task_ids,
                                    queues, settings.agent_pool)
        print(f"round trip, {opts.n} sequential getfilehash of a 4 KiB file (ms); the agent "
              f"and the bare worker run the {settings.agent_pool} pool, concurrency 2:")
        print(f"  {'':28} {'p50':>8} {'p99':>8}")
        for name, vals in (("liveresponse (HTTP API)", ours), ("bare Celery send_task", bare)):
            print(f"  {name:28} {percentile(vals, 50):8.2f} {percentile(vals, 99):8.2f}")
        ratio = statistics.median(ours) / statistics.median(bare)
        print(f"  p50 ratio ours/bare: {ratio:.2f}x (target <= 1.5x)")
        print("CPU per round trip (ms), by process:")
        print(f"  {'':28} {'client':>8} {'orch.':>8} {'worker':>8} {'Redis':>8} {'total':>8}")
        for name, cpu in (("liveresponse (HTTP API)", ours_cpu),
                          ("bare Celery send_task", bare_cpu)):
            parts = [cpu["client"], cpu["orchestrator"], cpu["worker"], cpu["redis"]]
            print(f"  {name:28} " + " ".join(f"{v:8.2f}" for v in parts) + f" {sum(parts):8.2f}")


def _cleanup(redis_url: str, prefix: str, task_ids: list[str], queues: list[str]) -> None:
    """Delete every key the run created: its prefix, results, queues and their bindings."""
    client = redis.Redis.from_url(redis_url)
    delete_matching(client, f"{prefix}:*")
    delete_results(client, task_ids)
    delete_queues(client, queues)


if __name__ == "__main__":
    main()
