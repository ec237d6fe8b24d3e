"""Fleet batches against real agents: one command per device, each checked and audited."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.signing import KeyPair
from tests.stack import (
    Stack,
    new_device_id,
    own_prefix_stack,
    purge_device_queue,
    register_offline,
)


@pytest.fixture(scope="module")
def fleet(redis_url: str, tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair
          ) -> Iterator[Stack]:
    """Two live agents tagged group:web, and nothing else yet."""
    devices = [new_device_id("web"), new_device_id("web")]
    with own_prefix_stack(redis_url, devices, tmp_path_factory.mktemp("fleet"),
                          signing=signing_keys, command_expiry_s=5.0) as st:
        for device in devices:
            st.tag(device, "group:web")
        yield st


def follow(http: httpx.Client, batch_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """Poll the batch until every device's outcome is recorded."""
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = http.get(f"/batches/{batch_id}").json()
        if body["finished"] or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def audit_actions(stack: Stack, batch_id: str) -> list[tuple[str, str]]:
    return [(e.action, e.decision) for e in stack.plane.audit.read()
            if e.details.get("batch") == batch_id]


def test_a_tag_selector_runs_the_line_on_every_tagged_device(fleet: Stack, tmp_path: Path
                                                             ) -> None:
    subject = tmp_path / "sample.bin"
    subject.write_bytes(b"fleet sample " * 999)
    expected = subprocess.run(["sha256sum", str(subject)], capture_output=True, text=True,
                              check=True).stdout.split()[0]
    with fleet.client() as http:
        resp = http.post("/batches", json={"selector": "tag:group:web",
                                           "line": f"getfilehash {subject}"})
        assert resp.status_code == 201, resp.text
        batch = follow(http, resp.json()["id"])
    assert batch["finished"] and batch["total"] == 2
    assert batch["counts"] == {"completed": 2}
    assert {e["device"] for e in batch["entries"]} == set(fleet.agents)
    assert all(e["result"]["sha256"] == expected for e in batch["entries"])
    actions = audit_actions(fleet, batch["id"])
    assert actions.count(("batch.created", "allowed")) == 1
    assert actions.count(("command.requested", "allowed")) == 2
    assert actions.count(("command.completed", "completed")) == 2
    assert fleet.plane.audit.verify().ok


def test_a_device_outside_the_users_scope_is_denied_and_the_rest_still_run(
        fleet: Stack, tmp_path: Path) -> None:
    web = sorted(fleet.agents)
    fleet.tag(web[1], "group:finance")
    try:
        token = fleet.user(f"webby-{new_device_id('u')}", ["responder"], scope="group:web")
        with fleet.client(token) as http:
            resp = http.post("/batches", json={"selector": ",".join(web),
                                               "line": f"dir {tmp_path}"})
            assert resp.status_code == 201, resp.text
            batch = follow(http, resp.json()["id"])
    finally:
        fleet.tag(web[1], "group:web")
    statuses = {e["device"]: e["status"] for e in batch["entries"]}
    # The scoped user sees only the entries of devices they may view.
    assert statuses == {web[0]: "completed"}
    with fleet.client() as http:
        full = http.get(f"/batches/{batch['id']}").json()
    denied = [e for e in full["entries"] if e["status"] == "denied"]
    assert [e["device"] for e in denied] == [web[1]]
    assert denied[0]["error"]["code"] == "permission_denied"
    actions = audit_actions(fleet, batch["id"])
    assert ("command.denied", "denied") in actions


def test_an_offline_device_waits_queued_and_runs_when_its_agent_returns(
        fleet: Stack, tmp_path: Path) -> None:
    device = register_offline(fleet)
    with fleet.client() as http:
        resp = http.post("/batches", json={"selector": device, "line": f"dir {tmp_path}",
                                           "expires_s": 120})
        assert resp.status_code == 201, resp.text
        batch_id = resp.json()["id"]
        time.sleep(1.0)
        assert http.get(f"/batches/{batch_id}").json()["counts"] == {"queued": 1}
        try:
            with fleet.local_agent(device, tmp_path / "agent.log"):
                batch = follow(http, batch_id)
        finally:
            purge_device_queue(fleet.plane, device)
    assert batch["counts"] == {"completed": 1}, batch


def test_an_expired_command_never_runs_when_its_agent_returns_later(
        fleet: Stack, tmp_path: Path) -> None:
    device = register_offline(fleet)
    with fleet.client() as http:
        resp = http.post("/batches", json={"selector": device, "line": f"dir {tmp_path}",
                                           "expires_s": 1})
        batch = follow(http, resp.json()["id"], timeout_s=10)
        assert batch["counts"] == {"expired": 1}, batch
        command_id = batch["entries"][0]["command_id"]
        try:
            with fleet.local_agent(device, tmp_path / "agent.log"):
                time.sleep(3.0)  # the agent reads its queue and drops the expired command
        finally:
            purge_device_queue(fleet.plane, device)
        record = http.get(f"/commands/{command_id}").json()
    assert record["status"] == "expired"
    assert record["started_at"] is None
    assert not fleet.ledger(device).contains(command_id)


def test_cancelling_a_batch_cancels_its_waiting_commands(fleet: Stack, tmp_path: Path) -> None:
    device = register_offline(fleet)
    try:
        with fleet.client() as http:
            resp = http.post("/batches", json={"selector": device, "line": f"dir {tmp_path}",
                                               "expires_s": 600})
            batch_id = resp.json()["id"]
            cancelled = http.post(f"/batches/{batch_id}/cancel").json()
            assert cancelled["cancelled"] == [device]
            batch = follow(http, batch_id, timeout_s=10)
    finally:
        purge_device_queue(fleet.plane, device)
    assert batch["counts"] == {"cancelled": 1}
    assert ("command.cancelled", "cancelled") in [
        (e.action, e.decision) for e in fleet.plane.audit.read()
        if e.details.get("command_id") == batch["entries"][0]["command_id"]]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"selector": "tag:nosuch", "line": "dir /"}, 404, "no registered device carries tag"),
    ({"selector": "nosuch-dev", "line": "dir /"}, 404, "unknown device 'nosuch-dev'"),
    ({"selector": "tag:group:web", "line": "getfile /etc/hostname"}, 400, "one device at a time"),
    ({"selector": "tag:group:web", "line": "cd /tmp"}, 400, "acts on a session"),
    ({"selector": "tag:group:web", "line": "frobnicate"}, 400, "unknown command"),
    ({"selector": "tag:group:web", "line": "dir /", "expires_s": 30 * 86400}, 400,
     "over the maximum"),
    ({"selector": " , ", "line": "dir /"}, 400, "empty device selector"),
])
def test_bad_batches_are_refused_with_a_clear_error_and_audited(
        fleet: Stack, body: dict[str, Any], status: int, words: str) -> None:
    with fleet.client() as http:
        resp = http.post("/batches", json=body)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["error"]["message"]
    last = fleet.plane.audit.read(limit=1)[-1]
    assert last.action == "batch.denied" and last.decision == "denied"


def test_a_batch_publishes_each_command_signed_for_its_own_device(fleet: Stack) -> None:
    """The message each agent reads carries an envelope signed for that device alone."""
    from tasks.envelope import CommandEnvelope
    from tasks.queues import queue_for
    from tasks.signing import Verifier

    devices = [register_offline(fleet, "group:probe") for _ in range(3)]
    try:
        with fleet.client() as http:
            resp = http.post("/batches", json={"selector": "tag:group:probe", "line": "dir /"})
            assert resp.status_code == 201
        for device in devices:
            raw = fleet.plane.client.lrange(queue_for(device), 0, -1)
            assert len(raw) == 1
            message = json.loads(raw[0])
            assert message["headers"]["task"] == "lr.command.dir"
            args = json.loads(base64.b64decode(message["body"]))[0]
            envelope = CommandEnvelope.model_validate(args[0])
            assert envelope.device_id == device
            Verifier.from_file(fleet.signing.public_path).verify(envelope)  # raises if forged
            assert message["headers"]["argsrepr"] == f"<dir {envelope.command_id}>"
    finally:
        for device in devices:
            purge_device_queue(fleet.plane, device)


def test_a_session_command_takes_its_expiry_within_the_maximum(fleet: Stack) -> None:
    device = sorted(fleet.agents)[0]
    session = fleet.open_session(device)
    with fleet.client() as http:
        resp = http.post(f"/sessions/{session}/commands",
                         json={"line": "dir /", "expires_s": 8 * 86400})
        assert resp.status_code == 400
        assert "over the maximum of 7d" in resp.json()["error"]["message"]
        resp = http.post(f"/sessions/{session}/commands",
                         json={"line": "dir /", "expires_s": 90})
        assert resp.status_code == 200, resp.text
        record = resp.json()
    assert record["expires_at"] - record["created_at"] == 90
