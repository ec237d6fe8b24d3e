"""Fan-out benchmark: one command to 1,000 devices as a batch, next to bare Celery, one run.

Registers N devices (online, tagged `group:bench`; no agents: this measures queueing, and the
messages stay in their queues until the clean-up), then times, over the same N device queues
and the same payload size:
- liveresponse: `POST /batches` with `tag:group:bench` through the HTTP API: every device
  checked (RBAC with scopes, isolation, approval rule), recorded, audited (one signed entry per
  command) and its envelope signed; the answer comes once every message is queued;
- bare Celery: a `send_task` loop of N tasks, one per queue (the issue's baseline);
- bare Celery, batched: the same loop inside kombu's `Producer.batch()` (for reference).
Each is run `--repeat` times; the best and the median are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import celery
import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import bench_redis, describe_machine  # noqa: E402
from config import Settings  # noqa: E402
from orchestrator.api.server import ServerThread  # noqa: E402
from orchestrator.local.cleanup import delete_device_queues, delete_matching  # noqa: E402
from orchestrator.plane import ControlPlane  # noqa: E402
from orchestrator.state.identity import create_user, issue_token  # noqa: E402
from tasks.queues import queue_for  # noqa: E402
from tasks.signing import generate_keypair  # noqa: E402


def register(plane: ControlPlane, devices: list[str]) -> None:
    pipe = plane.client.pipeline()
    seen = time.time() + 3600  # "online" for the whole run
    for device in devices:
        pipe.hset(plane.keys.device(device), mapping={
            "id": device, "last_seen": repr(seen), "platform": "linux",
            "tags": "group:bench"})
        pipe.sadd(plane.keys.devices, device)
    pipe.execute()


def purge(plane: ControlPlane, devices: list[str]) -> None:
    """Delete the devices' queues (what waits in them) and the binding sets the bare senders
    declared."""
    delete_device_queues(plane.client, devices)
    delete_matching(plane.client, "celery-task-meta-*bench*")


def ours(http: httpx.Client, n: int) -> float:
    start = time.perf_counter()
    resp = http.post("/batches", json={"selector": "tag:group:bench",
                                       "line": "getfilehash /etc/hostname"})
    elapsed = time.perf_counter() - start
    body = resp.json()
    assert resp.status_code == 201, body
    assert body["counts"] == {"queued": n}, body["counts"]
    return elapsed


def sample_envelope(device: str) -> dict[str, object]:
    """A payload the size of a signed getfilehash envelope."""
    return {"command_id": uuid.uuid4().hex, "device_id": device, "session_id": "",
            "user": "bench", "command": "getfilehash",
            "args": {"path": "/etc/hostname", "algo": "sha256"}, "cwd": None,
            "issued_at": time.time(), "expires_at": time.time() + 30, "key_id": "0" * 16,
            "signature": "A" * 88}


def bare_loop(app: celery.Celery, devices: list[str]) -> float:
    payloads = [sample_envelope(d) for d in devices]
    start = time.perf_counter()
    for device, payload in zip(devices, payloads, strict=True):
        app.send_task("lr.command.getfilehash", args=[payload], queue=queue_for(device),
                      expires=30)
    return time.perf_counter() - start


def bare_batched(app: celery.Celery, devices: list[str]) -> float:
    payloads = [sample_envelope(d) for d in devices]
    start = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch():
        for device, payload in zip(devices, payloads, strict=True):
            app.send_task("lr.command.getfilehash", args=[payload], queue=queue_for(device),
                          expires=30, producer=producer)
    return time.perf_counter() - start


def repeat(times: int, run: Callable[[], float], after: Callable[[], None]) -> list[float]:
    out = []
    for _ in range(times):
        out.append(run())
        after()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()

    with ExitStack() as stack:
        # Removed last: an embedded Redis's socket lives in it until the clean-up ran.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="lrf-", dir="/tmp"))
        tmpdir = Path(tmp)
        redis_url, where = bench_redis(stack, tmpdir / "redis")
        prefix = f"lrbench-{uuid.uuid4().hex[:6]}"
        stack.callback(lambda: delete_matching(redis.Redis.from_url(redis_url), f"{prefix}:*"))
        signing = generate_keypair(tmpdir / "keys")
        plane = ControlPlane.from_settings(Settings(
            redis_url=redis_url, key_prefix=prefix, signing_key_file=signing.private_path,
            audit_witness_dir=tmpdir / "audit-witness"))
        stack.callback(plane.close)
        server = stack.enter_context(ServerThread(plane))
        user = create_user(plane.client, plane.keys, "bench", ["responder"])
        token = issue_token(plane.client, plane.keys, user)
        devices = [f"bench-{uuid.uuid4().hex[:6]}-{i:05d}" for i in range(opts.devices)]
        register(plane, devices)
        stack.callback(purge, plane, devices)
        http = stack.enter_context(httpx.Client(
            base_url=server.url, timeout=600, headers={"Authorization": f"Bearer {token}"}))

        describe_machine(redis_url, where)
        # Warm up: queues declared, connections open, code paths imported.
        bare_loop(plane.celery, devices[:50])
        ours(http, opts.devices)
        purge(plane, devices)
        results = {
            "liveresponse batch (HTTP API)": repeat(
                opts.repeat, lambda: ours(http, opts.devices), lambda: purge(plane, devices)),
            "bare Celery send_task loop": repeat(
                opts.repeat, lambda: bare_loop(plane.celery, devices),
                lambda: purge(plane, devices)),
            "bare Celery, kombu batch": repeat(
                opts.repeat, lambda: bare_batched(plane.celery, devices),
                lambda: purge(plane, devices)),
        }
        print(f"queue one command on each of {opts.devices} devices (s), "
              f"{opts.repeat} runs each:")
        print(f"  {'':32} {'best':>7} {'median':>7} {'ms/device':>10}")
        for name, values in results.items():
            med = statistics.median(values)
            print(f"  {name:32} {min(values):7.3f} {med:7.3f} {med * 1000 / opts.devices:10.3f}")
        ratio = (statistics.median(results["bare Celery send_task loop"])
                 / statistics.median(results["liveresponse batch (HTTP API)"]))
        print(f"  speed-up ours vs bare send_task loop (medians): {ratio:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
