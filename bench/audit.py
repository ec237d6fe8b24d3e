"""Audit chain benchmark: appends, and verify and export of a long chain, each next to a bare
baseline from the same run.

Part 1 (per append): an agent's unsigned `AuditChain` (the append as it was before entries were
signed), the orchestrator's signed `AuditLog` without and with its witness, each alone and on
the pipelined `stage` path (one HSET beside it, as dispatch sends a command's record); rounds
of the variants alternate, so a busy machine slows them alike.

Part 2 (a chain of --chain entries, default 1,000,000, on its own key prefix, deleted at the
end): the chain is filled through the orchestrator's pipelined `stage_many` path (batches of
--batch entries, one pipeline each) and that rate reported; then `lr audit verify` and
`lr audit export --jsonl FILE` run as the user runs them (the CLI against an orchestrator
serving the chain), next to a bare XRANGE loop over the same stream and a bare line dump
(XRANGE, one json.dumps per entry, written to a file). With --memory, the peak Python memory
of an in-process verify is reported too, and with --sequential the rate of a verify in one
process (no segments).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import cast

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import bench_redis  # noqa: E402
from config import Settings  # noqa: E402
from orchestrator.api.server import ServerThread  # noqa: E402
from orchestrator.audit.log import AuditLog  # noqa: E402
from orchestrator.audit.witness import HeadWitness, WitnessMark  # noqa: E402
from orchestrator.local.cleanup import delete_matching  # noqa: E402
from orchestrator.plane import ControlPlane  # noqa: E402
from orchestrator.state.identity import create_user, issue_token  # noqa: E402
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


def fill_chain(client: redis.Redis, log: AuditLog, n: int, batch: int) -> float:
    """Append `n` entries through the pipelined `stage_many` path; entries per second."""
    start = time.perf_counter()
    for first in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        finish = log.stage_many(pipe, [
            ("alice", "command.requested", f"dev{i % 50}", "allowed",
             {"command_id": f"c{i}", "device": f"dev{i % 50}", "session": f"S{i // 100}",
              "command": "getfilehash", "line": f"getfilehash /srv/app/file{i}.exe"})
            for i in range(first, min(n, first + batch))])
        finish(pipe.execute())
    return n / (time.perf_counter() - start)


def bare_scan(client: redis.Redis, stream: str) -> tuple[int, float]:
    """A bare XRANGE loop over `stream` (redis-py, batches of 1,000): (entries, seconds)."""
    start, count, cursor = time.perf_counter(), 0, "-"
    while True:
        batch = cast(list[tuple[bytes, dict[bytes, bytes]]],
                     client.xrange(stream, min=cursor, max="+", count=1000))
        for _entry_id, _fields in batch:
            count += 1
        if len(batch) < 1000:
            return count, time.perf_counter() - start
        cursor = "(" + batch[-1][0].decode()


def bare_dump(client: redis.Redis, stream: str, target: Path) -> tuple[int, float]:
    """A bare line dump: XRANGE, one json.dumps per entry, written to `target`."""
    start, count, cursor = time.perf_counter(), 0, "-"
    with target.open("w") as out:
        while True:
            batch = cast(list[tuple[bytes, dict[bytes, bytes]]],
                         client.xrange(stream, min=cursor, max="+", count=1000))
            for entry_id, fields in batch:
                out.write(json.dumps({"type": "entry", "id": entry_id.decode(),
                                      **{k.decode(): v.decode() for k, v in fields.items()}})
                          + "\n")
                count += 1
            if len(batch) < 1000:
                return count, time.perf_counter() - start
            cursor = "(" + batch[-1][0].decode()


def run_cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run `lr ARGS` as the user does; (seconds, stdout). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    lr = str(Path(sys.executable).with_name("lr"))
    done = subprocess.run([lr, *args], env=env,
                          capture_output=True, text=True, timeout=3600, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"lr {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return took, done.stdout


def cpu_seconds(client: redis.Redis) -> tuple[float, float, float]:
    """CPU seconds used so far by this process (the orchestrator serving the chain), by its
    finished children (`lr`, and the verify's worker processes) and by the Redis server (all
    its clients: on a shared server, others' commands too)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    info = cast(dict[str, float], client.info("cpu"))
    return (own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime,
            float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))


def cpu_line(client: redis.Redis, before: tuple[float, float, float], count: int,
             children_are: str) -> str:
    """Where the CPU went since `before`, in µs per entry."""
    own, children, server = (
        (b - a) / count * 1e6 for a, b in zip(before, cpu_seconds(client), strict=True))
    return (f"           CPU µs per entry: orchestrator {own:.1f}, {children_are} "
            f"{children:.1f}, Redis {server:.1f}")


def chain_figures(opts: argparse.Namespace, url: str, tmp: Path, stack: ExitStack) -> None:
    """Part 2: fill a chain, then verify and export it through the CLI, beside bare loops."""
    prefix = f"lrbench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    stack.callback(lambda: delete_matching(client, f"{prefix}:*"))
    signing = generate_keypair(tmp / "chain-keys")
    settings = Settings(redis_url=url, key_prefix=prefix, signing_key_file=signing.private_path,
                        evidence_dir=tmp / "evidence", audit_witness_dir=tmp / "chain-witness")
    plane = ControlPlane.from_settings(settings)
    stack.callback(plane.close)
    server = stack.enter_context(ServerThread(plane))
    user = create_user(plane.client, plane.keys, "bench", ["admin"])
    env = {**os.environ, "LR_API_URL": server.url, "LR_TOKEN": issue_token(
        plane.client, plane.keys, user), "LR_REDIS_URL": url, "LR_KEY_PREFIX": prefix}

    rate = fill_chain(client, plane.audit, opts.chain, opts.batch)
    print(f"\nchain of {opts.chain:,} entries on {prefix}:")
    print(f"  append, pipelined stage path ({opts.batch} per pipeline): {rate:,.0f} entries/s")

    count, bare_s = bare_scan(client, plane.keys.audit)
    before = cpu_seconds(client)
    took, out = run_cli(env, "--json", "audit", "verify")
    verdict = json.loads(out)
    assert verdict["ok"], verdict
    print(f"  verify   lr audit verify       {verdict['entries'] / took:>10,.0f} entries/s "
          f"({took:.1f} s)   bare XRANGE loop {count / bare_s:>10,.0f} entries/s "
          f"({bare_s:.1f} s)")
    print(cpu_line(client, before, verdict["entries"], "lr and workers"))

    if opts.sequential:
        start = time.perf_counter()
        one = plane.audit.verify(workers=1)
        took = time.perf_counter() - start
        assert one.ok, one
        print(f"  verify   in one process        {one.entries / took:>10,.0f} entries/s "
              f"({took:.1f} s)   (the same walk, no segments)")

    lines, dump_s = bare_dump(client, plane.keys.audit, tmp / "bare.jsonl")
    (tmp / "bare.jsonl").unlink()
    before = cpu_seconds(client)
    took, _ = run_cli(env, "audit", "export", "--jsonl", str(tmp / "export.jsonl"))
    exported = sum(1 for _ in (tmp / "export.jsonl").open()) - 1
    print(f"  export   lr audit export       {exported / took:>10,.0f} lines/s   "
          f"({took:.1f} s)   bare line dump   {lines / dump_s:>10,.0f} lines/s "
          f"({dump_s:.1f} s)")
    print(cpu_line(client, before, exported, "lr"))
    if opts.file_verify:
        took, out = run_cli(env, "--json", "audit", "verify", "--file",
                            str(tmp / "export.jsonl"), "--public-key", str(signing.public_path))
        print(f"  verify --file (offline, one Ed25519 verification per entry): "
              f"{json.loads(out)['entries'] / took:,.0f} entries/s ({took:.1f} s)")
    if opts.memory:
        tracemalloc.start()
        plane.audit.verify(workers=1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  peak Python memory of an in-process verify: {peak / 1024:.0f} KiB")


def append_figures(opts: argparse.Namespace, client: redis.Redis, signer: Signer,
                   fresh: Callable[[], Keys], witness: Callable[[Keys], HeadWitness]) -> None:
    """Part 1: µs per append, alone and staged, with and without signature and witness."""
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
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=400, help="appends per round")
    parser.add_argument("--chain", type=int, default=1_000_000, help="entries of part 2")
    parser.add_argument("--batch", type=int, default=1000, help="entries per fill pipeline")
    parser.add_argument("--file-verify", action="store_true",
                        help="also verify the export offline (slow: Ed25519 per entry)")
    parser.add_argument("--memory", action="store_true",
                        help="also report the peak memory of an in-process verify")
    parser.add_argument("--skip-appends", action="store_true", help="only part 2")
    parser.add_argument("--sequential", action="store_true",
                        help="also verify in one process, without segments")
    opts = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lr-bench-")))
        url, where = bench_redis(stack, tmp / "redis")
        client = redis.Redis.from_url(url)
        signer = Signer.from_file(generate_keypair(tmp / "keys").private_path)
        prefixes: list[str] = []
        stack.callback(lambda: [delete_matching(client, f"{p}:*") for p in prefixes])

        def fresh() -> Keys:
            prefixes.append(f"lrbench-{uuid.uuid4().hex[:8]}")
            return Keys(prefixes[-1])

        def witness(keys: Keys) -> HeadWitness:
            return HeadWitness.for_prefix(tmp / "witness", keys.prefix)

        print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}")
        print(f"python {platform.python_version()}, redis-py {redis.__version__}; {where}")
        if not opts.skip_appends:
            append_figures(opts, client, signer, fresh, witness)
        if opts.chain:
            chain_figures(opts, url, tmp, stack)


if __name__ == "__main__":
    main()
