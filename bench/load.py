"""Load: concurrent analyst sessions on real agents, read commands over the HTTP API.

`--sessions` sessions (default 50) spread over `--devices` real agents (default 20, one worker
process each) run a mix of read commands back to back for `--seconds` (default 60). Then it
checks what must hold under load: no request failed, no result was lost (every command's
record is completed with its result), and every command is in the audit stream exactly once
as `command.requested` and once with its outcome. Prints p50/p99 latency and throughput;
exits 1 when a check fails. Everything runs on a key prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import bench_redis  # noqa: E402
from config import Settings  # noqa: E402
from orchestrator.api.server import ServerThread  # noqa: E402
from orchestrator.commands.dispatch import Dispatcher  # noqa: E402
from orchestrator.local.agents import LocalAgent  # noqa: E402
from orchestrator.local.cleanup import (  # noqa: E402
    delete_device_queues,
    delete_matching,
    delete_results,
)
from orchestrator.plane import ControlPlane  # noqa: E402
from orchestrator.state.identity import create_user, issue_token  # noqa: E402
from tasks.envelope import CommandStatus  # noqa: E402
from tasks.signing import generate_keypair  # noqa: E402

#: The read commands a session cycles through (what a triage looks at).
READ_MIX = ("dir /etc", "fileinfo /etc/hostname", "getfilehash /etc/hostname",
            "findfile 'host*' --path /etc --max 5", "processes --pid 1", "netstat")
#: Errors printed in full (the rest are counted).
SHOWN_ERRORS = 5


@dataclass
class Tally:
    """What the sessions saw, shared between their threads."""

    latencies_ms: list[float] = field(default_factory=list)
    command_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_session(url: str, token: str, session_id: str, offset: int, until: float,
                tally: Tally) -> None:
    """One analyst: read commands back to back until `until` (monotonic)."""
    headers = {"Authorization": f"Bearer {token}"}
    n = offset
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        while time.monotonic() < until:
            line = READ_MIX[n % len(READ_MIX)]
            n += 1
            start = time.perf_counter()
            try:
                resp = http.post(f"/sessions/{session_id}/commands", json={"line": line})
                body = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                with tally.lock:
                    tally.errors.append(f"{line}: {type(exc).__name__}: {exc}")
                continue
            elapsed_ms = (time.perf_counter() - start) * 1000
            ok = resp.status_code == 200 and body.get("status") == "completed"
            with tally.lock:
                if "command_id" in body:
                    tally.command_ids.append(body["command_id"])
                if ok:
                    tally.latencies_ms.append(elapsed_ms)
                else:
                    tally.errors.append(f"{line}: HTTP {resp.status_code} {str(body)[:300]}")


def check_outcomes(plane: ControlPlane, command_ids: list[str]) -> list[str]:
    """Problems with the commands' records and audit entries (none when all is well)."""
    problems: list[str] = []
    dispatcher = Dispatcher(plane)
    for command_id in command_ids:
        record = dispatcher.get(command_id)
        if record.status is not CommandStatus.COMPLETED or record.result is None:
            problems.append(f"{command_id} ({record.command}): record {record.status.value}, "
                            f"result {'present' if record.result is not None else 'lost'}, "
                            f"error {record.error.code if record.error else None}, outcome "
                            f"{'recorded' if record.outcome_recorded else 'not recorded'}")
    requested: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for entry in plane.audit.read():
        audited_id = entry.details.get("command_id")
        if not isinstance(audited_id, str) or not entry.action.startswith("command."):
            continue
        if entry.action == "command.requested":
            requested[audited_id] += 1
        elif entry.action == "command.completed":
            outcomes[audited_id] += 1
        else:
            problems.append(f"{audited_id}: audited as {entry.action}")
    for command_id in command_ids:
        if requested[command_id] != 1 or outcomes[command_id] != 1:
            problems.append(f"{command_id}: audited {requested[command_id]}x requested, "
                            f"{outcomes[command_id]}x completed (want 1 and 1)")
    return problems


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def start_agents(stack: ExitStack, redis_url: str, prefix: str, devices: list[str],
                 tmpdir: Path, public_key: Path) -> None:
    """One agent (one worker process) per device, started side by side, stopped on exit."""
    env = {"LR_LEDGER_DIR": str(tmpdir / "ledger"), "LR_QUARANTINE_DIR": str(tmpdir / "q")}
    agents = [LocalAgent(d, redis_url, key_prefix=prefix, concurrency=1, env=env,
                         public_key_file=public_key, log_path=tmpdir / f"agent-{d}.log")
              for d in devices]
    for agent in agents:
        stack.callback(agent.stop)
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        list(pool.map(LocalAgent.start, agents))


def run_load(seconds: float, sessions: int, devices: int, redis_url: str | None = None) -> int:
    """Run the load and print its figures; 0 when every check held, else 1."""
    with ExitStack() as stack:
        # Removed last: an embedded Redis's socket lives in it until the clean-up ran.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="lrload-", dir="/tmp"))
        tmpdir = Path(tmp)
        redis_url, where = bench_redis(stack, tmpdir / "redis", redis_url or "")
        prefix = f"lrload-{uuid.uuid4().hex[:6]}"
        device_ids = [f"load-{prefix[-6:]}-{i:02d}" for i in range(devices)]
        tally = Tally()
        stack.callback(_cleanup, redis_url, prefix, device_ids, tally)
        signing = generate_keypair(tmpdir / "keys")
        settings = Settings(redis_url=redis_url, key_prefix=prefix, data_dir=tmpdir / "data",
                            signing_key_file=signing.private_path,
                            orchestrator_public_key_file=signing.public_path)
        plane = ControlPlane.from_settings(settings)
        stack.callback(plane.close)
        server = stack.enter_context(ServerThread(plane))
        user = create_user(plane.client, plane.keys, "load", ["responder"])
        token = issue_token(plane.client, plane.keys, user)
        start_agents(stack, redis_url, prefix, device_ids, tmpdir, signing.public_path)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as http:
            session_ids = [http.post("/sessions", json={"device_id": device_ids[i % devices]})
                           .json()["id"] for i in range(sessions)]

        print(f"machine: {platform.machine()} {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at start; {where}")
        print(f"{sessions} sessions on {devices} agents (1 worker process each), "
              f"{seconds:g} s of {', '.join(READ_MIX)}")
        began = time.monotonic()
        until = began + seconds
        threads = [threading.Thread(target=run_session, name=f"session-{i}",
                                    args=(server.url, token, sid, i, until, tally))
                   for i, sid in enumerate(session_ids)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        problems = check_outcomes(plane, tally.command_ids)

        done = len(tally.latencies_ms)
        print(f"commands completed: {done} in {elapsed:.1f} s = {done / elapsed:.1f} commands/s")
        if done:
            print(f"latency (ms): p50 {percentile(tally.latencies_ms, 50):.1f}  "
                  f"p99 {percentile(tally.latencies_ms, 99):.1f}  "
                  f"max {max(tally.latencies_ms):.1f}")
        print(f"errors: {len(tally.errors)}; records or audit entries wrong: {len(problems)}")
        for problem in (tally.errors + problems)[:SHOWN_ERRORS]:
            print(f"  {problem}")
        ok = done > 0 and not tally.errors and not problems
        print("load: OK" if ok else "load: FAILED")
        return 0 if ok else 1


def _cleanup(redis_url: str, prefix: str, devices: list[str], tally: Tally) -> None:
    """Delete the run's keys: its prefix, its device queues and its commands' results."""
    client = redis.Redis.from_url(redis_url)
    delete_matching(client, f"{prefix}:*")
    delete_device_queues(client, devices)
    delete_results(client, tally.command_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs")
    parser.add_argument("--sessions", type=int, default=50, help="concurrent sessions")
    parser.add_argument("--devices", type=int, default=20, help="agents (one per device)")
    opts = parser.parse_args()
    if opts.seconds <= 0 or opts.sessions < 1 or opts.devices < 1:
        parser.error("--seconds must be positive, --sessions and --devices at least 1")
    sys.exit(run_load(opts.seconds, opts.sessions, opts.devices,
                      os.environ.get("LR_REDIS_URL")))


if __name__ == "__main__":
    main()
