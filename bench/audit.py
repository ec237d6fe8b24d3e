"""Audit chain benchmark: what signing and the head witness add per append, and verify's rate.

Appends N entries through an agent's unsigned `AuditChain` (the append as it was before
entries were signed), the orchestrator's signed `AuditLog` without and with its witness, and
the pipelined `stage` path; then verifies a chain of 10,000 signed entries, with the peak
Python memory of the walk. Each figure is the median of three runs on the same Redis.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import EmbeddedRedis  # noqa: E402
from orchestrator.audit import AuditLog  # noqa: E402
from orchestrator.audit_witness import HeadWitness, WitnessMark  # noqa: E402
from orchestrator.cleanup import delete_matching  # noqa: E402
from tasks.auditchain import AuditChain, sign_entry  # noqa: E402
from tasks.keys import Keys  # noqa: E402
from tasks.signing import Signer, generate_keypair  # noqa: E402

RUNS = 3


def per_call_us(n: int, call: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        call(i)
    return (time.perf_counter() - start) / n * 1e6


def median_of_runs(run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(RUNS))


def measured(how: Callable[[Callable[[Keys], AuditChain]], float],
             make: Callable[[Keys], AuditChain]) -> float:
    return median_of_runs(lambda: how(make))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000, help="appends per run")
    parser.add_argument("--verify-entries", type=int, default=10_000)
    opts = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lr-bench-")))
        url = os.environ.get("LR_REDIS_URL")
        where = f"Redis server at {url}"
        if not url:
            server = stack.enter_context(EmbeddedRedis(tmp / "redis"))
            url, where = server.url, f"embedded Redis ({server.executable})"
        client = redis.Redis.from_url(url)
        signer = Signer.from_file(generate_keypair(tmp / "keys").private_path)
        prefixes: list[str] = []
        stack.callback(lambda: [delete_matching(client, f"{p}:*") for p in prefixes])

        def fresh() -> Keys:
            prefixes.append(f"lrbench-{uuid.uuid4().hex[:8]}")
            return Keys(prefixes[-1])

        def witness(keys: Keys) -> HeadWitness:
            return HeadWitness.for_prefix(tmp / "witness", keys.prefix)

        def appends(make: Callable[[Keys], AuditChain]) -> float:
            chain = make(fresh())
            chain.append("alice", "warm", "x", "allowed")
            return per_call_us(opts.n, lambda i: chain.append(
                "alice", "command.requested", "dev1", "allowed", command_id=f"c{i}", n=i))

        def staged(make: Callable[[Keys], AuditChain]) -> float:
            keys = fresh()
            chain = make(keys)
            chain.append("alice", "warm", "x", "allowed")

            def one(i: int) -> None:
                pipe = client.pipeline(transaction=False)
                pipe.hset(keys.command(f"c{i}"), "status", "completed")
                finish = chain.stage(pipe, "alice", "command.completed", "dev1", "completed",
                                     command_id=f"c{i}")
                finish(pipe.execute()[-1])

            return per_call_us(opts.n, one)

        unsigned = lambda keys: AuditChain(client, keys)  # noqa: E731
        signed = lambda keys: AuditLog(client, keys, signer)  # noqa: E731
        witnessed = lambda keys: AuditLog(client, keys, signer, witness=witness(keys))  # noqa: E731

        print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}")
        print(f"python {platform.python_version()}, redis-py {redis.__version__}; {where}\n")
        print(f"append, {opts.n} sequential entries (µs per append, median of {RUNS} runs):")
        rows = [("unsigned (an agent's append)", appends, unsigned),
                ("signed", appends, signed),
                ("signed + witness (the orchestrator)", appends, witnessed),
                ("staged with one HSET, unsigned", staged, unsigned),
                ("staged with one HSET, signed + witness", staged, witnessed)]
        for name, how, make in rows:
            print(f"  {name:<42} {measured(how, make):8.1f}")

        mark_witness = witness(fresh())
        sign_us = median_of_runs(
            lambda: per_call_us(opts.n, lambda i: sign_entry(signer, "a" * 64)))
        mark_us = median_of_runs(lambda: per_call_us(
            opts.n, lambda i: mark_witness.advance(WitnessMark(f"{i + 1}-0", "a" * 64))))
        print(f"  of which: Ed25519 signature {sign_us:.1f}, witness update {mark_us:.1f}")

        keys = fresh()
        log = AuditLog(client, keys, signer, witness=witness(keys))
        for i in range(opts.verify_entries):
            log.append("alice", "command.requested", "dev1", "allowed", command_id=f"c{i}", n=i)

        def verify_rate() -> float:
            start = time.perf_counter()
            verdict = log.verify()
            assert verdict.ok, verdict.problem
            return verdict.entries / (time.perf_counter() - start)

        rate = median_of_runs(verify_rate)
        tracemalloc.start()
        log.verify()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"\nverify, {opts.verify_entries} signed entries: {rate:,.0f} entries/s, "
              f"peak Python memory {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
