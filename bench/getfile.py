"""getfile throughput: a file copied off an agent into the evidence store, next to a bare copy.

Prints MB/s of `getfile` (API → signed command → agent reads, hashes and streams 1 MiB chunks
into a Redis stream with back-pressure → the orchestrator hashes, stores, audits) and, in the
same run on the same Redis, of a bare copy through a Redis stream with the same chunk size and
window and no checks (one thread sends, the main thread receives and writes). Also prints the
peak RSS growth of the agent's processes during the transfer.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import cast

import httpx
import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import bench_redis  # noqa: E402
from config import Settings  # noqa: E402
from orchestrator.api.server import ServerThread  # noqa: E402
from orchestrator.local.agents import LocalAgent  # noqa: E402
from orchestrator.local.cleanup import (  # noqa: E402
    delete_device_queues,
    delete_matching,
    delete_results,
)
from orchestrator.plane import ControlPlane  # noqa: E402
from orchestrator.state.identity import create_user, issue_token  # noqa: E402
from tasks.signing import generate_keypair  # noqa: E402

MIB = 1024 * 1024
CHUNK = MIB
WINDOW = 8
#: The device id the benchmark's agent runs as.
DEVICE = "bench-host"


def make_subject(path: Path, size_mb: int) -> str:
    """Write `size_mb` MiB of random bytes; their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(size_mb):
            block = os.urandom(MIB)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def bare_copy(client: redis.Redis, source: Path, target: Path) -> float:
    """Seconds to copy `source` through a Redis stream (same chunks and window), no checks."""
    key = f"lrbench-bare-{uuid.uuid4().hex[:8]}"

    def send() -> None:
        with open(source, "rb") as f:
            while block := f.read(CHUNK):
                while client.xlen(key) >= WINDOW:
                    time.sleep(0.001)
                client.xadd(key, {"data": block})
        client.xadd(key, {"end": b"1"})

    start = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    last = "0"
    with open(target, "wb") as out:
        done = False
        while not done:
            reply = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                         client.xread({key: last}, count=WINDOW, block=1000) or [])
            for _, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    if b"end" in fields:
                        done = True
                    else:
                        out.write(fields[b"data"])
                    client.xdel(key, entry_id)
    sender.join()
    client.delete(key)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200, help="file size in MiB")
    opts = parser.parse_args()
    with ExitStack() as stack:
        # Removed last: an embedded Redis's socket lives in it until the clean-up ran.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="lrb-", dir="/tmp"))
        tmpdir = Path(tmp)
        redis_url, _ = bench_redis(stack, tmpdir / "redis")
        prefix = f"lrbench-{uuid.uuid4().hex[:6]}"
        client = redis.Redis.from_url(redis_url)
        # Run after the agent stopped: the prefix, the queue's bindings, the command's result.
        task_ids: list[str] = []
        stack.callback(delete_matching, client, f"{prefix}:*")
        stack.callback(delete_device_queues, client, [DEVICE])
        stack.callback(delete_results, client, task_ids)
        signing = generate_keypair(tmpdir / "keys")
        settings = Settings(redis_url=redis_url, key_prefix=prefix,
                            signing_key_file=signing.private_path,
                            evidence_dir=tmpdir / "evidence",
                            audit_witness_dir=tmpdir / "audit-witness")
        plane = ControlPlane.from_settings(settings)
        stack.callback(plane.close)
        server = stack.enter_context(ServerThread(plane))
        user = create_user(plane.client, plane.keys, "bench", ["admin"])
        token = issue_token(plane.client, plane.keys, user)
        agent = stack.enter_context(LocalAgent(
            DEVICE, redis_url, key_prefix=prefix, public_key_file=signing.public_path,
            log_path=tmpdir / "agent.log", env={"LR_LEDGER_DIR": str(tmpdir / "ledger")}))
        subject = tmpdir / "subject.bin"
        expected = make_subject(subject, opts.mb)

        bare_s = bare_copy(client, subject, tmpdir / "bare.out")
        with httpx.Client(base_url=server.url, timeout=600,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            session = http.post("/sessions", json={"device_id": DEVICE}).json()["id"]
            agent_procs = [psutil.Process(agent.pid), *psutil.Process(agent.pid).children(True)]
            before = sum(p.memory_info().rss for p in agent_procs)
            peak = [before]

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], sum(p.memory_info().rss for p in agent_procs))
                    time.sleep(0.05)

            stop = threading.Event()
            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.perf_counter()
            record = http.post(f"/sessions/{session}/commands",
                               json={"line": f"getfile {subject}"}).json()
            ours_s = time.perf_counter() - start
            task_ids.append(record["command_id"])
            stop.set()
            sampler.join()
        assert record["status"] == "completed", record
        assert record["result"]["evidence_sha256"] == expected
        print(f"getfile of {opts.mb} MiB of random bytes, 1 MiB chunks, window {WINDOW}:")
        print(f"  liveresponse getfile        {opts.mb / ours_s:8.1f} MiB/s  ({ours_s:.2f} s)")
        print(f"  bare Redis stream copy      {opts.mb / bare_s:8.1f} MiB/s  ({bare_s:.2f} s)")
        print(f"  ratio ours/bare: {bare_s / ours_s:.0%}")
        print(f"  agent RSS growth at peak: {(peak[0] - before) / MIB:.1f} MiB")


if __name__ == "__main__":
    main()
