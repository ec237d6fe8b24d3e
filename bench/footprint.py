"""Agent footprint: RSS and USS of every process of an idle `lr-agent` (concurrency 2) next to
a bare Celery worker with the same pool and flags, and the CPU each uses while idle, one run:
the agent's default pool (threads) first, then the prefork pair for reference.

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
from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import bench_redis, describe_machine  # noqa: E402
from orchestrator.local.agents import LocalAgent  # noqa: E402
from orchestrator.local.cleanup import delete_matching, delete_queues  # noqa: E402
from tasks.app import celery_url  # noqa: E402
from tasks.queues import queue_for  # noqa: E402
from tasks.signing import generate_keypair  # noqa: E402

#: Targets: all of the agent's processes together, and their idle CPU.
RSS_TARGET_MIB = 60
CPU_TARGET_PCT = 1.0
MIB = 1024 * 1024
#: Processes each pool starts besides the worker's main one.
POOL_CHILDREN = {"threads": 0, "prefork": 2}


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


def start_bare(redis_url: str, queue: str, pool: str, log: Path) -> subprocess.Popen[bytes]:
    """A bare Celery worker with the agent's pool and flags, `--hostname bare-<queue>@%h`."""
    env = {**os.environ, "LR_REDIS_URL": redis_url,
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    argv = [sys.executable, "-m", "celery", "-A", "bench.bare_worker", "worker", "-Q", queue,
            "--pool", pool, "--concurrency", "2", "--without-gossip", "--without-mingle",
            "--hostname", f"bare-{queue}@%h", "--loglevel", "WARNING"]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_bare_ready(redis_url: str, queue: str, timeout_s: float = 60) -> None:
    """Until the bare worker answers a ping (it consumes by then)."""
    app = Celery("footprint-probe", broker=celery_url(redis_url))
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5)
            if any(name.startswith(f"bare-{queue}@") for reply in replies for name in reply):
                return
        raise RuntimeError(f"the bare worker on {queue} did not answer within {timeout_s} s")
    finally:
        app.close()


def wait_children(pid: int, n: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while len(tree(pid)) < n + 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not start {n} pool processes")
        time.sleep(0.1)


Row = tuple[str, tuple[int, float, float, float]]


def measure_pair(stack: ExitStack, pool: str, redis_url: str, tmpdir: Path, prefix: str,
                 public_key: Path, client: redis.Redis, opts: argparse.Namespace) -> list[Row]:
    """The agent with `pool` and a bare worker with the same pool, idle side by side."""
    device = f"bench-fp-{pool}-{uuid.uuid4().hex[:6]}"
    bare_queue = f"bare.{uuid.uuid4().hex[:6]}"
    stack.callback(delete_queues, client, [queue_for(device), bare_queue])
    children = POOL_CHILDREN[pool]
    with LocalAgent(device, redis_url, key_prefix=prefix, public_key_file=public_key,
                    log_path=tmpdir / f"agent-{pool}.log",
                    env={"LR_LEDGER_DIR": str(tmpdir / "ledger"), "LR_AGENT_POOL": pool}
                    ) as agent:
        wait_children(agent.pid, children)
        bare = start_bare(redis_url, bare_queue, pool, tmpdir / f"bare-{pool}.log")
        try:
            wait_children(bare.pid, children)
            wait_bare_ready(redis_url, bare_queue)
            time.sleep(opts.settle)
            return [(f"lr-agent --pool {pool}", measure(agent.pid, opts.idle)),
                    (f"bare celery, {pool}", measure(bare.pid, opts.idle))]
        finally:
            bare.terminate()
            bare.wait(timeout=20)


def print_rows(title: str, rows: list[Row]) -> None:
    print(title)
    print(f"  {'':28} {'procs':>5} {'RSS MiB':>8} {'USS MiB':>8} {'CPU %':>6}")
    for name, (n, rss, uss, cpu) in rows:
        print(f"  {name:28} {n:5d} {rss:8.1f} {uss:8.1f} {cpu:6.2f}")


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
        stack.callback(delete_matching, client, f"{prefix}:*")
        signing = generate_keypair(tmpdir / "keys")
        describe_machine(redis_url, where)
        pairs = {pool: measure_pair(stack, pool, redis_url, tmpdir, prefix,
                                    signing.public_path, client, opts)
                 for pool in ("threads", "prefork")}
        idle = f"{opts.idle:.0f} s after {opts.settle:.0f} s settling"
        print_rows(f"idle worker, concurrency 2, the agent's default pool (threads), {idle}:",
                   pairs["threads"])
        (_, (_, rss, _, cpu)), (_, (_, bare_rss, _, _)) = pairs["threads"]
        print(f"  agent RSS / bare: {rss / bare_rss:.2f}x; targets: <= {RSS_TARGET_MIB} MiB RSS "
              f"in all, < {CPU_TARGET_PCT:g} % of a core: "
              f"{'met' if rss <= RSS_TARGET_MIB and cpu < CPU_TARGET_PCT else 'missed'}")
        print()
        print_rows("for reference, the prefork pool (LR_AGENT_POOL=prefork), same flags:",
                   pairs["prefork"])
        (_, (_, rss, _, _)), (_, (_, bare_rss, _, _)) = pairs["prefork"]
        print(f"  agent RSS / bare (prefork): {rss / bare_rss:.2f}x")


if __name__ == "__main__":
    main()
