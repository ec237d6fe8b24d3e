"""Agent footprint: RSS and USS of every process of an idle `lr-agent` (concurrency 2) next to
a bare Celery worker with the same pool and flags, and the CPU each uses while idle, one run.

RSS counts shared pages once per process (what `ps` shows, summed); USS is what each process
holds alone (what would be freed if it exited). The processes are the agent and its children,
found by `psutil` and compared with `ps`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import bench_redis, describe_machine  # noqa: E402
from orchestrator.local.agents import LocalAgent  # noqa: E402
from orchestrator.local.cleanup import delete_matching, delete_queues  # noqa: E402
from tasks.queues import queue_for  # noqa: E402
from tasks.signing import generate_keypair  # noqa: E402

#: Targets: all of the agent's processes together, and their idle CPU.
RSS_TARGET_MIB = 60
CPU_TARGET_PCT = 1.0
MIB = 1024 * 1024


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def measure(pid: int, idle_s: float) -> tuple[int, float, float, float]:
    """(processes, RSS MiB, USS MiB, CPU % of one core over `idle_s`) of `pid`'s tree."""
    procs = tree(pid)
    cpu_before = sum(sum(p.cpu_times()[:2]) for p in procs)
    time.sleep(idle_s)
    procs = tree(pid)
    cpu_after = sum(sum(p.cpu_times()[:2]) for p in procs)
    rss = sum(p.memory_info().rss for p in procs) / MIB
    uss = sum(p.memory_full_info().uss for p in procs) / MIB
    ps_rss = sum(int(subprocess.run(["ps", "-o", "rss=", "-p", str(p.pid)], text=True,
                                    capture_output=True).stdout.strip() or 0) for p in procs)
    assert abs(ps_rss / 1024 - rss) < 2 + 0.05 * rss, (ps_rss, rss)  # psutil agrees with ps
    return len(procs), rss, uss, 100 * (cpu_after - cpu_before) / idle_s


def start_bare(redis_url: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LR_REDIS_URL": redis_url,
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_worker", "worker", "-Q", queue,
            "--pool", "prefork", "--concurrency", "2", "--without-gossip", "--without-mingle",
            "--loglevel", "WARNING"]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_children(pid: int, n: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while len(tree(pid)) < n + 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not start {n} pool processes")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle before measuring")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of CPU measured")
    opts = parser.parse_args()
    with ExitStack() as stack:
        # Removed last: an embedded Redis's socket lives in it until the clean-up ran.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="lrb-", dir="/tmp"))
        tmpdir = Path(tmp)
        redis_url, where = bench_redis(stack, tmpdir / "redis")
        client = redis.Redis.from_url(redis_url)
        prefix = f"lrbench-{uuid.uuid4().hex[:6]}"
        device = f"bench-fp-{uuid.uuid4().hex[:6]}"
        bare_queue = f"bare.{uuid.uuid4().hex[:6]}"
        stack.callback(delete_queues, client, [queue_for(device), bare_queue])
        stack.callback(delete_matching, client, f"{prefix}:*")
        signing = generate_keypair(tmpdir / "keys")
        describe_machine(redis_url, where)

        agent = stack.enter_context(LocalAgent(
            device, redis_url, key_prefix=prefix, public_key_file=signing.public_path,
            log_path=tmpdir / "agent.log", env={"LR_LEDGER_DIR": str(tmpdir / "ledger")}))
        wait_children(agent.pid, 2)
        bare = start_bare(redis_url, bare_queue, tmpdir / "bare.log")
        try:
            wait_children(bare.pid, 2)
            time.sleep(opts.settle)
            rows = [("lr-agent (all processes)", measure(agent.pid, opts.idle)),
                    ("bare celery worker", measure(bare.pid, opts.idle))]
        finally:
            bare.terminate()
            bare.wait(timeout=20)
        print(f"idle worker, prefork concurrency 2, {opts.idle:.0f} s after {opts.settle:.0f} s "
              "settling:")
        print(f"  {'':28} {'procs':>5} {'RSS MiB':>8} {'USS MiB':>8} {'CPU %':>6}")
        for name, (n, rss, uss, cpu) in rows:
            print(f"  {name:28} {n:5d} {rss:8.1f} {uss:8.1f} {cpu:6.2f}")
        (_, rss, _, cpu), (_, bare_rss, _, _) = rows[0][1], rows[1][1]
        print(f"  agent RSS / bare: {rss / bare_rss:.2f}x; targets: <= {RSS_TARGET_MIB} MiB RSS "
              f"in all, < {CPU_TARGET_PCT:g} % of a core")


if __name__ == "__main__":
    main()
