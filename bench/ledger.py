"""Cost of the agent's once-only ledger claim: one SQLite insert (WAL) per command, on disk.

Prints the median and p99 of N claims through `worker_agent.ledger.Ledger` (synchronous=NORMAL,
what the agent runs) next to the same insert with synchronous=FULL (an fsync per commit), and
the Redis transition the agent makes right after, for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.envelope import CommandStatus  # noqa: E402
from tasks.keys import Keys  # noqa: E402
from tasks.state import CommandStateStore  # noqa: E402
from worker_agent.ledger import Ledger  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def time_claims(ledger: Ledger, n: int) -> list[float]:
    now = time.time()
    out = []
    for _ in range(n):
        command_id = uuid.uuid4().hex
        start = time.perf_counter()
        assert ledger.claim(command_id, now + 30, now)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def time_transitions(url: str, n: int) -> list[float]:
    client = redis.Redis.from_url(url)
    keys = Keys(f"lrbench-{uuid.uuid4().hex[:8]}")
    states = CommandStateStore(client, keys)
    out = []
    try:
        for _ in range(n):
            command_id = uuid.uuid4().hex
            client.hset(keys.command(command_id), "state", "queued")
            start = time.perf_counter()
            states.transition(command_id, CommandStatus.RUNNING, [CommandStatus.QUEUED],
                              {"started_at": repr(time.time())})
            out.append((time.perf_counter() - start) * 1e6)
    finally:
        for key in client.scan_iter(match=f"{keys.prefix}:*"):
            client.delete(key)
    return out


def report(name: str, values: list[float]) -> None:
    print(f"  {name:<44} {statistics.median(values):8.1f} {percentile(values, 99):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000, help="claims per variant")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the ledger files go (default: a temporary directory)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        normal = Ledger(Path(tmp) / "normal.sqlite3")
        full = Ledger(Path(tmp) / "full.sqlite3")
        full._connection().execute("PRAGMA synchronous = FULL")
        print(f"ledger claim, {opts.n} inserts each, on {tmp} (µs):")
        print(f"  {'':<44} {'p50':>8} {'p99':>8}")
        report("Ledger.claim (WAL, synchronous=NORMAL)", time_claims(normal, opts.n))
        report("same insert, synchronous=FULL (fsync)", time_claims(full, opts.n))
        url = os.environ.get("LR_REDIS_URL")
        if url:
            report("Redis queued→running transition, for scale",
                   time_transitions(url, opts.n))
        normal.close()
        full.close()


if __name__ == "__main__":
    main()
