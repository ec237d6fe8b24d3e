"""Audit chain benchmark: what signing and the head witness add per append, and verify's rate.

Appends entries through an agent's unsigned `AuditChain` (the append as it was before entries
were signed), the orchestrator's signed `AuditLog` without and with its witness, each alone
and on the pipelined `stage` path (one HSET beside it, as dispatch sends a command's record);
rounds of the variants alternate, so a busy machine slows them alike. Then verifies a chain of
10,000 signed entries and reports the peak Python memory of that walk.
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
from orchestrator.audit.log import AuditLog  # noqa: E402
from orchestrator.audit.witness import HeadWitness, WitnessMark  # noqa: E402
from orchestrator.local.cleanup import delete_matching  # noqa: E402
from tasks.auditchain import AuditChain, sign_entry  # noqa: E402
from tasks.keys import Keys  # noqa: E402
from tasks.signing import Signer, generate_keypair  # noqa: E402


def per_call_us(n: int, call: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        call(i)
    return (time.perf_counter() - start) / n * 1e6


def append_round(chain: AuditChain, n: int) -> float:
    return per_call_us(n, lambda i: chain.append(
        "alice", "command.requested", "dev1", "allowed", command_id=f"c{i}", n=i))


def stage_round(client: redis.Redis, chain: AuditChain, n: int) -> float:
    def one(i: int) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.hset(chain.keys.command(f"c{i}"), "status", "completed")
        finish = chain.stage(pipe, "alice", "command.completed", "dev1", "completed",
                             command_id=f"c{i}")
        finish(pipe.execute()[-1])

    return per_call_us(n, one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=400, help="appends per round")
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

        keys = [fresh() for _ in range(3)]
        chains: dict[str, AuditChain] = {
            "unsigned (an agent's append)": AuditChain(client, keys[0]),
            "signed": AuditLog(client, keys[1], signer),
            "signed + witness (the orchestrator)": AuditLog(client, keys[2], signer,
                                                            witness=witness(keys[2])),
        }
        figures: dict[str, dict[str, list[float]]] = {
            name: {"append": [], "stage": []} for name in chains}
        for chain in chains.values():
            chain.append("alice", "warm", "x", "allowed")
        for _ in range(opts.rounds):
            for name, chain in chains.items():
                figures[name]["append"].append(append_round(chain, opts.per_round))
                figures[name]["stage"].append(stage_round(client, chain, opts.per_round))

        print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}")
        print(f"python {platform.python_version()}, redis-py {redis.__version__}; {where}\n")
        print(f"µs per append, {opts.rounds} alternating rounds of {opts.per_round}:")
        print(f"  {'':<40} {'alone min':>10} {'p50':>7} {'staged min':>11} {'p50':>7}")
        for name, got in figures.items():
            print(f"  {name:<40} {min(got['append']):10.1f} "
                  f"{statistics.median(got['append']):7.1f} {min(got['stage']):11.1f} "
                  f"{statistics.median(got['stage']):7.1f}")

        hot = witness(fresh())
        sign_us = per_call_us(5000, lambda i: sign_entry(signer, "a" * 64))
        mark_us = per_call_us(5000, lambda i: hot.advance(WitnessMark(f"{i + 1}-0", "a" * 64)))
        print(f"  in a tight loop: Ed25519 signature {sign_us:.1f}, witness update {mark_us:.1f}")

        verify_keys = fresh()
        log = AuditLog(client, verify_keys, signer, witness=witness(verify_keys))
        for i in range(opts.verify_entries):
            log.append("alice", "command.requested", "dev1", "allowed", command_id=f"c{i}", n=i)
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            verdict = log.verify()
            assert verdict.ok, verdict.problem
            rates.append(verdict.entries / (time.perf_counter() - start))
        tracemalloc.start()
        log.verify()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"\nverify, {opts.verify_entries} signed entries: {statistics.median(rates):,.0f} "
              f"entries/s (median of 3), peak Python memory {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
