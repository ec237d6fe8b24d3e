"""Second-person approval: held commands run only once another entitled user approves them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from orchestrator.policies.loader import dump_policy
from orchestrator.policies.model import ApprovalRule, default_policy
from tests.stack import Stack


@pytest.fixture(scope="module")
def critical(stack: Stack, device_a: str) -> str:
    """Device a, tagged critical: the default policy holds kill there for approval."""
    stack.tag(device_a, "critical")
    return device_a


@pytest.fixture(scope="module")
def people(stack: Stack) -> dict[str, str]:
    """Tokens: two advanced analysts, a viewer and an advanced analyst of another group."""
    return {
        "alice": stack.user("alice", ["advanced"]),
        "bob": stack.user("bob", ["advanced"]),
        "vic": stack.user("vic", ["viewer"]),
        "webby": stack.user("webby", ["advanced"], scope="group:web"),
    }


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A real process to be killed (or, when denied, to survive)."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _request_kill(stack: Stack, device: str, token: str, pid: int) -> dict:
    session = stack.open_session(device, token=token)
    with stack.client(token) as http:
        resp = http.post(f"/sessions/{session}/commands", json={"line": f"kill {pid}"})
    assert resp.status_code == 202, resp.text
    return resp.json()


def _actions(stack: Stack, command_id: str) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor, e.decision) for e in stack.plane.audit.read(command=command_id)]


def test_a_held_command_runs_only_after_another_user_approves(
        stack: Stack, critical: str, people: dict[str, str],
        victim: subprocess.Popen[bytes]) -> None:
    record = _request_kill(stack, critical, people["alice"], victim.pid)
    assert record["status"] == "pending-approval" and record["approval_expires_at"]
    time.sleep(0.5)
    assert victim.poll() is None, "a held command must not reach the agent"
    with stack.client(people["vic"]) as http:
        assert [r["command_id"] for r in http.get("/approvals").json()] == [record["command_id"]]
    with stack.client(people["bob"]) as http:
        done = http.post(f"/commands/{record['command_id']}/approve").json()
    assert done["status"] == "completed", done
    assert done["decided_by"] == "bob"
    assert victim.wait(timeout=10) is not None
    assert not psutil.pid_exists(victim.pid) or psutil.Process(victim.pid).status() == "zombie"
    assert _actions(stack, record["command_id"]) == [
        ("command.requested", "alice", "pending-approval"),
        ("command.approved", "bob", "allowed"),
        ("command.completed", "alice", "completed"),
    ]
    with stack.client(people["alice"]) as http:
        assert http.get(f"/commands/{record['command_id']}").json()["status"] == "completed"


def test_the_requester_cannot_approve_their_own_command(
        stack: Stack, critical: str, people: dict[str, str],
        victim: subprocess.Popen[bytes]) -> None:
    record = _request_kill(stack, critical, people["alice"], victim.pid)
    with stack.client(people["alice"]) as http:
        resp = http.post(f"/commands/{record['command_id']}/approve")
    assert resp.status_code == 403
    assert "second person" in resp.json()["error"]["message"]
    assert victim.poll() is None
    assert ("approval.approve_refused", "alice", "denied") in _actions(
        stack, record["command_id"])
    with stack.client(people["bob"]) as http:
        http.post(f"/commands/{record['command_id']}/deny", json={"reason": "cleanup"})


@pytest.mark.parametrize("who", ["vic", "webby"])
def test_only_users_entitled_on_the_device_may_approve(
        stack: Stack, critical: str, people: dict[str, str], who: str,
        victim: subprocess.Popen[bytes]) -> None:
    record = _request_kill(stack, critical, people["alice"], victim.pid)
    with stack.client(people[who]) as http:
        resp = http.post(f"/commands/{record['command_id']}/approve")
    assert resp.status_code == 403
    assert "'live.remediate'" in resp.json()["error"]["message"]
    assert victim.poll() is None
    with stack.client(people["bob"]) as http:
        assert http.get(f"/commands/{record['command_id']}").json()["status"] == (
            "pending-approval")
        http.post(f"/commands/{record['command_id']}/deny")


def test_a_denied_command_never_runs_and_cannot_be_decided_again(
        stack: Stack, critical: str, people: dict[str, str],
        victim: subprocess.Popen[bytes]) -> None:
    record = _request_kill(stack, critical, people["alice"], victim.pid)
    with stack.client(people["bob"]) as http:
        denied = http.post(f"/commands/{record['command_id']}/deny",
                           json={"reason": "not this host"}).json()
        assert denied["status"] == "denied"
        assert denied["error"]["message"] == "denied by bob: not this host"
        again = http.post(f"/commands/{record['command_id']}/approve")
    assert again.status_code == 409
    assert "is denied, not waiting for approval" in again.json()["error"]["message"]
    time.sleep(0.5)
    assert victim.poll() is None
    actions = _actions(stack, record["command_id"])
    assert ("command.approval_denied", "bob", "denied") in actions
    assert ("approval.approve_refused", "bob", "denied") in actions
    assert not any(a == "command.approved" for a, _, _ in actions)


def test_approving_an_unknown_command_is_a_clear_audited_404(
        stack: Stack, people: dict[str, str]) -> None:
    with stack.client(people["bob"]) as http:
        resp = http.post("/commands/0123456789abcdef0123456789abcdef/approve")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_command_id"
    refusals = [e for e in stack.plane.audit.read(actor="bob")
                if e.action == "approval.approve_refused"]
    assert refusals[-1].details["reason"] == "unknown_command_id"


def test_commands_elsewhere_do_not_wait(stack: Stack, device_b: str,
                                       people: dict[str, str]) -> None:
    session = stack.open_session(device_b, token=people["alice"])
    body = stack.run(session, "kill 4194000", token=people["alice"])
    assert body["status"] == "failed" and body["error"]["code"] == "process_not_found"


def test_an_unapproved_command_expires(stack: Stack, critical: str, people: dict[str, str],
                                       victim: subprocess.Popen[bytes]) -> None:
    quick = default_policy().model_copy(update={"approvals": [
        ApprovalRule(commands=["kill"], device_tags=["critical"], timeout_s=1)]})
    with stack.client() as http:
        assert http.put("/policy", json={"yaml": dump_policy(quick)}).status_code == 200
    try:
        record = _request_kill(stack, critical, people["alice"], victim.pid)
        time.sleep(1.5)
        with stack.client(people["alice"]) as http:
            assert http.get(f"/commands/{record['command_id']}").json()["status"] == "expired"
        with stack.client(people["bob"]) as http:
            assert http.get("/approvals").json() == []
            resp = http.post(f"/commands/{record['command_id']}/approve")
            assert resp.status_code == 409
            assert http.get(f"/commands/{record['command_id']}").json()["status"] == "expired"
        assert victim.poll() is None
        assert ("command.expired", "orchestrator", "expired") in _actions(
            stack, record["command_id"])
    finally:
        with stack.client() as http:
            http.put("/policy", json={"yaml": dump_policy(default_policy())})
