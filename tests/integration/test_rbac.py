"""RBAC enforced by the orchestrator: roles, device-group scopes, tokens; every no is audited."""

from __future__ import annotations

import time

import pytest

from orchestrator.state.identity import list_users, token_id
from tasks.registry import REGISTRY
from tests.stack import Stack

#: What a responder must never run (DESIGN: advanced or admin only).
BEYOND_RESPONDER = {
    "getfile": "getfile /etc/hostname",
    "kill": "kill 4194000",
    "remediate": "remediate /tmp/x",
    "runscript": "runscript collect.sh",
    "isolate": "isolate",
}


def _last(stack: Stack, actor: str, action: str) -> dict:
    entries = [e for e in stack.plane.audit.read(actor=actor) if e.action == action]
    assert entries, f"no {action} entry by {actor}"
    return entries[-1].model_dump()


def _user_names(stack: Stack) -> list[str]:
    return [u.name for u in list_users(stack.plane.client, stack.plane.keys)]


@pytest.fixture(scope="module")
def tagged(stack: Stack, device_a: str, device_b: str) -> tuple[str, str]:
    """Device a is in group:web, device b in group:finance."""
    stack.tag(device_a, "group:web")
    stack.tag(device_b, "group:finance")
    return device_a, device_b


@pytest.mark.parametrize("command", sorted(BEYOND_RESPONDER))
def test_a_responder_cannot_run_commands_beyond_read_only(
        stack: Stack, device_a: str, command: str) -> None:
    if command not in REGISTRY:
        pytest.skip(f"{command} is not a registered command yet")
    token = stack.user(f"resp-{command}", ["responder"])
    session = stack.open_session(device_a, token=token)
    with stack.client(token) as http:
        resp = http.post(f"/sessions/{session}/commands",
                         json={"line": BEYOND_RESPONDER[command]})
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["code"] == "permission_denied"
    assert f"'{REGISTRY[command].permission}'" in error["message"]
    denied = _last(stack, f"resp-{command}", "command.denied")
    assert denied["details"]["reason"] == "permission_denied"


def test_a_responder_may_run_read_only_commands(stack: Stack, device_a: str) -> None:
    token = stack.user("resp-reader", ["responder"])
    session = stack.open_session(device_a, token=token)
    assert stack.run(session, "getfilehash /etc/hostname", token=token)["status"] == "completed"


def test_a_scoped_advanced_user_stays_in_their_group(stack: Stack,
                                                    tagged: tuple[str, str]) -> None:
    web, finance = tagged
    token = stack.user("web-analyst", ["advanced"], scope="group:web")
    with stack.client(token) as http:
        resp = http.post("/sessions", json={"device_id": finance})
        assert resp.status_code == 403
        assert "'session.open'" in resp.json()["error"]["message"]
        assert "group:finance" in resp.json()["error"]["message"]
        assert http.post("/sessions", json={"device_id": web}).status_code == 201
        # Listing shows only the devices of the user's groups.
        assert [d["id"] for d in http.get("/devices").json()] == [web]
        assert http.get(f"/devices/{finance}").status_code == 403
    denied = _last(stack, "web-analyst", "session.denied")
    assert denied["details"]["device"] == finance


def test_a_user_may_hold_different_roles_on_different_groups(
        stack: Stack, tagged: tuple[str, str]) -> None:
    web, finance = tagged
    token = stack.user("mixed", ["advanced"], scope="group:web")
    with stack.client() as http:
        resp = http.post("/users/mixed/grants", json={"role": "responder",
                                                      "scope": "group:finance"})
        assert resp.status_code == 200, resp.text
    on_finance = stack.open_session(finance, token=token)
    assert stack.run(on_finance, "kill 4194000", token=token)["error"]["code"] == (
        "permission_denied")
    on_web = stack.open_session(web, token=token)
    assert stack.run(on_web, "kill 4194000", token=token)["error"]["code"] == (
        "process_not_found")


def test_a_viewer_cannot_open_sessions(stack: Stack, device_a: str) -> None:
    token = stack.user("watcher", ["viewer"])
    with stack.client(token) as http:
        resp = http.post("/sessions", json={"device_id": device_a})
        assert resp.status_code == 403
        assert "'session.open'" in resp.json()["error"]["message"]
        assert http.get("/devices").status_code == 200
    assert _last(stack, "watcher", "session.denied")["decision"] == "denied"


@pytest.mark.parametrize(("header", "reason"), [
    ("Bearer lr_" + "x" * 43, "unknown API token"),
    ("Bearer not-a-token", "malformed API token"),
    ("Basic dXNlcjpwYXNz", "missing bearer token"),
])
def test_bad_tokens_get_401_and_are_audited(stack: Stack, header: str, reason: str) -> None:
    with stack.client() as http:
        resp = http.get("/whoami", headers={"Authorization": header})
    assert resp.status_code == 401
    assert reason in resp.json()["error"]["message"]
    assert "not-a-token" not in resp.text
    failed = _last(stack, "anonymous", "auth.failed")
    assert reason in failed["details"]["message"]


def test_tokens_are_created_by_admins_shown_once_and_revocable(stack: Stack) -> None:
    stack.user("tok-user", ["viewer"])
    with stack.client() as http:
        made = http.post("/users/tok-user/tokens").json()
    token = made["token"]
    assert made["token_id"] == token_id(token)
    created = _last(stack, "admin", "token.created")
    assert created["details"]["token_id"] == made["token_id"]
    assert token not in str(stack.plane.audit.read())
    with stack.client(token) as http:
        assert http.get("/whoami").json()["user"] == "tok-user"
        # Not an admin: may not make tokens, for others or for itself.
        refused = http.post("/users/tok-user/tokens")
        assert refused.status_code == 403 and "'admin'" in refused.json()["error"]["message"]
        # Anyone may revoke their own token.
        assert http.post("/tokens/revoke", json={"token": made["token_id"]}).status_code == 200
        assert http.get("/whoami").status_code == 401
    assert _last(stack, "tok-user", "token.revoked")["details"]["token_id"] == made["token_id"]
    with stack.client() as http:
        again = http.post("/tokens/revoke", json={"token": made["token_id"]})
        assert again.status_code == 404
    assert _last(stack, "admin", "token.revoke.refused")["details"]["reason"] == "not_found"


def test_users_need_a_role_and_group_the_policy_knows(stack: Stack) -> None:
    with stack.client() as http:
        resp = http.post("/users", json={"name": "eve", "grants": [{"role": "root"}]})
        assert resp.status_code == 400 and "unknown role 'root'" in resp.json()["error"]["message"]
        assert http.post("/users", json={"name": "Bad Name!", "grants": [
            {"role": "viewer"}]}).status_code == 400
    assert "eve" not in _user_names(stack)
    refused = [e.details for e in stack.plane.audit.read(actor="admin")
               if e.action == "user.create.refused"]
    assert [d["user"] for d in refused[-2:]] == ["eve", "Bad Name!"]
    assert all(d["reason"] == "usage" for d in refused[-2:])


def test_only_admins_manage_users(stack: Stack) -> None:
    token = stack.user("not-admin", ["advanced"])
    with stack.client(token) as http:
        resp = http.post("/users", json={"name": "sneaky", "grants": [{"role": "admin"}]})
    assert resp.status_code == 403
    assert "sneaky" not in _user_names(stack)
    assert _last(stack, "not-admin", "access.denied")["details"]["permission"] == "admin"


def test_an_expired_token_gets_401_saying_so(stack: Stack) -> None:
    stack.user("shortlived", ["viewer"])
    with stack.client() as http:
        made = http.post("/users/shortlived/tokens", json={"ttl_s": 1}).json()
        assert made["expires_at"] is not None
        too_long = http.post("/users/shortlived/tokens", json={"ttl_s": 10 * 365 * 86400})
        assert too_long.status_code == 400 and "out of range" in too_long.json()["error"]["message"]
    with stack.client(made["token"]) as http:
        assert http.get("/whoami").status_code == 200
        time.sleep(1.2)
        resp = http.get("/whoami")
    assert resp.status_code == 401
    assert "API token expired at" in resp.json()["error"]["message"]
    assert "expired" in _last(stack, "anonymous", "auth.failed")["details"]["message"]
