"""`lr flower` for real: a login on every request, the agent and its queue, each command's name
and state, and never a command's arguments or result; nothing in it can stop an agent.

A stock `celery flower` (not read-only) on the same broker shows the agent's own part: its
events carry no result, and the shutdown and revoke such a Flower sends are refused, audited,
and change nothing.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.app import celery_url
from tasks.event_content import WITHHELD
from tasks.queues import queue_for
from tasks.registry import REGISTRY
from tasks.signing import KeyPair
from tests.flower_process import (
    PASSWORD,
    USER,
    RunningFlower,
    flower_process,
    lr_flower_argv,
    stock_flower_argv,
)
from tests.security.by_hand import agent_entries, agent_node, wait_for
from tests.stack import Stack, new_device_id, own_prefix_stack

pytestmark = pytest.mark.integration

#: How long Flower has to see a task's events or an agent's inspection reply.
SEEN_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def st(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
       signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one real agent on a prefix of this module's own."""
    with own_prefix_stack(redis_url, [new_device_id("fl")], tmp_path_factory.mktemp("fl"),
                          signing=signing_keys) as stack:
        yield stack


@pytest.fixture(scope="module")
def device(st: Stack) -> str:
    return next(iter(st.agents))


@pytest.fixture(scope="module")
def node(st: Stack, device: str) -> str:
    return agent_node(st, device)


@pytest.fixture(scope="module")
def flower(redis_url: str, st: Stack, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningFlower]:
    """`lr flower` on the test Redis, with a login."""
    env = {"LR_REDIS_URL": redis_url, "LR_FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    log = tmp_path_factory.mktemp("flower-log") / "lr-flower.log"
    with flower_process(lr_flower_argv, env, log) as running:
        yield running


class Hashed:
    """A getfilehash the agent ran on a file of random bytes: what must never show in Flower."""

    def __init__(self, command_id: str, path: Path, sha256: str) -> None:
        self.command_id = command_id
        self.path = path
        self.sha256 = sha256

    def secrets(self) -> list[str]:
        return [self.sha256, str(self.path), self.path.name]


def run_getfilehash(st: Stack, device: str, directory: Path) -> Hashed:
    """Hash a new file on the agent; its sha256 checked against `sha256sum`."""
    path = directory / f"invoice-{uuid.uuid4().hex[:12]}.exe"
    path.write_bytes(os.urandom(64 * 1024 + 3))
    sha256 = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    body = st.run(st.open_session(device), f"getfilehash {path}")
    assert body["status"] == "completed", body
    assert body["result"]["sha256"] == sha256  # the content exists: Flower must not show it
    return Hashed(str(body["command_id"]), path, sha256)


def seen_task(flower: RunningFlower, command_id: str, state: str = "SUCCESS"
              ) -> dict[str, Any]:
    """Flower's `/api/task/info` of a command once it shows `state`."""
    def probe() -> dict[str, Any] | None:
        with flower.client() as http:
            resp = http.get(f"/api/task/info/{command_id}")
        info: dict[str, Any] = resp.json() if resp.status_code == 200 else {}
        return info if info.get("state") == state else None
    return wait_for(probe, f"Flower to show {command_id} as {state}", SEEN_TIMEOUT_S)


def seen_worker(flower: RunningFlower, node: str) -> dict[str, Any]:
    """Flower's inspection of `node` once it has one."""
    def probe() -> dict[str, Any] | None:
        with flower.client() as http:
            workers = http.get("/api/workers", params={"refresh": "1"}).json()
        found: dict[str, Any] | None = workers.get(node)
        return found if found and "active_queues" in found else None
    return wait_for(probe, f"Flower to list {node}", SEEN_TIMEOUT_S)


@pytest.fixture(scope="module")
def hashed(st: Stack, device: str, flower: RunningFlower,
           tmp_path_factory: pytest.TempPathFactory) -> Hashed:
    """A getfilehash run while `lr flower` watches, and seen by it as succeeded."""
    done = run_getfilehash(st, device, tmp_path_factory.mktemp("evidence"))
    seen_task(flower, done.command_id)
    return done


def every_page(flower: RunningFlower, node: str, command_id: str) -> dict[str, str]:
    """The body of every read-only page and API call of Flower, by path."""
    paths = ["/api/workers?refresh=1", f"/api/workers?workername={node}", "/api/tasks",
             f"/api/task/info/{command_id}", "/api/task/types", "/api/queues/length",
             "/tasks/datatable?draw=1&start=0&length=100&search[value]=&order[0][column]=0"
             "&columns[0][data]=name&order[0][dir]=asc",
             "/", "/workers", f"/worker/{node}", "/tasks", f"/task/{command_id}", "/broker",
             "/metrics"]
    bodies = {}
    with flower.client() as http:
        for path in paths:
            resp = http.get(path)
            assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
            bodies[path] = resp.text
    return bodies


def test_every_request_needs_the_login(flower: RunningFlower, hashed: Hashed) -> None:
    paths = ["/api/workers", "/api/tasks", f"/api/task/info/{hashed.command_id}", "/",
             "/tasks", f"/task/{hashed.command_id}", "/broker", "/metrics"]
    for auth in (None, (USER, "wrong-password"), ("intruder", PASSWORD)):
        with flower.client(auth) as http:
            for path in paths:
                assert http.get(path).status_code == 401, (auth, path)


def test_the_agent_appears_with_its_own_queue(flower: RunningFlower, node: str,
                                              device: str) -> None:
    worker = seen_worker(flower, node)
    assert [q["name"] for q in worker["active_queues"]] == [queue_for(device)]
    with flower.client() as http:
        lengths = http.get("/api/queues/length").json()["active_queues"]
    assert {"name": queue_for(device), "messages": 0} in lengths


def test_a_command_shows_its_name_state_and_device_only(
        flower: RunningFlower, hashed: Hashed, node: str) -> None:
    info = seen_task(flower, hashed.command_id)
    assert info["name"] == REGISTRY["getfilehash"].task_name == "lr.command.getfilehash"
    assert info["worker"] == node
    assert info["args"] == f"<getfilehash {hashed.command_id}>"
    assert info["kwargs"] == "{}"
    assert info["result"] == WITHHELD
    assert info["runtime"] is not None
    with flower.client() as http:
        listed = http.get("/api/tasks", params={"taskname": info["name"]}).json()
    assert listed[hashed.command_id]["state"] == "SUCCESS"


def test_no_argument_or_result_content_on_any_page(flower: RunningFlower, hashed: Hashed,
                                                    node: str) -> None:
    for path, body in every_page(flower, node, hashed.command_id).items():
        for secret in hashed.secrets():
            assert secret not in body, (path, secret)


def test_control_routes_are_refused_and_the_agent_keeps_running(
        st: Stack, flower: RunningFlower, device: str, node: str, hashed: Hashed,
        tmp_path: Path) -> None:
    seen_worker(flower, node)
    refused = [
        ("POST", f"/api/worker/shutdown/{node}"),
        ("POST", f"/api/worker/pool/restart/{node}"),
        ("POST", f"/api/worker/pool/shrink/{node}"),
        ("POST", f"/api/worker/queue/cancel-consumer/{node}?queue={queue_for(device)}"),
        ("POST", f"/api/task/revoke/{hashed.command_id}?terminate=true"),
        ("POST", f"/api/task/rate-limit/{REGISTRY['dir'].task_name}?ratelimit=1/h"),
        ("POST", f"/api/task/send-task/{REGISTRY['dir'].task_name}"),
        ("POST", f"/api/task/async-apply/{REGISTRY['dir'].task_name}"),
        ("POST", f"/api/task/abort/{hashed.command_id}"),
        ("GET", f"/api/task/result/{hashed.command_id}"),
    ]
    with flower.client() as http:
        for method, path in refused:
            resp = http.request(method, path, json={"args": []})
            assert resp.status_code == 403, (path, resp.status_code, resp.text)
            assert "disabled in liveresponse's Flower" in resp.text
            assert hashed.sha256 not in resp.text
    with flower.client(None) as http:
        assert http.post(f"/api/worker/shutdown/{node}").status_code == 401
    assert st.agents[device].proc is not None and st.agents[device].proc.poll() is None
    run_getfilehash(st, device, tmp_path)  # and it still runs commands


def test_a_stock_flower_cannot_stop_the_agent_nor_read_a_result(
        redis_url: str, st: Stack, flower: RunningFlower, device: str, node: str,
        tmp_path: Path) -> None:
    """Flower as shipped (not read-only, no event filter): what the agent alone guarantees."""
    with flower_process(lambda port: stock_flower_argv(celery_url(redis_url), port), {},
                        tmp_path / "stock-flower.log") as stock:
        seen_worker(stock, node)
        done = run_getfilehash(st, device, tmp_path)
        info = seen_task(stock, done.command_id)
        assert info["result"] == WITHHELD
        assert info["args"] == f"<getfilehash {done.command_id}>"
        with stock.client() as http:
            for path in (f"/api/task/info/{done.command_id}", "/api/tasks"):
                for secret in done.secrets():
                    assert secret not in http.get(path).text, (path, secret)
            # Flower holds no result backend: nothing to read the result from.
            assert http.get(f"/api/task/result/{done.command_id}").status_code == 503
            shut = http.post(f"/api/worker/shutdown/{node}")
            assert shut.status_code == 200, shut.text  # Flower sent it
            revoke = http.post(f"/api/task/revoke/{done.command_id}",
                               params={"terminate": "true"})
            assert revoke.status_code == 200, revoke.text
        for method in ("shutdown", "revoke"):
            wait_for(lambda m=method: [e for e in agent_entries(st, device, "remote_control")
                                       if e.details.get("method") == m],
                     f"the agent to audit its refusal of {method}", SEEN_TIMEOUT_S)
    proc = st.agents[device].proc
    assert proc is not None and proc.poll() is None
    run_getfilehash(st, device, tmp_path)


def test_lr_flower_refuses_to_start_without_a_login(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LR_FLOWER_BASIC_AUTH"}
    env["LR_REDIS_URL"] = redis_url
    out = subprocess.run(lr_flower_argv(1), env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 10
    assert "LR_FLOWER_BASIC_AUTH" in out.stderr
