"""The dispatch pipeline's refusals: sessions, devices, bad lines; each clear and audited."""

from __future__ import annotations

import pytest

from tasks import clock
from tests.stack import Stack


def _actions(stack: Stack, session: str) -> list[tuple[str, str]]:
    with stack.client() as http:
        return [(e["action"], e["decision"]) for e in http.get(
            "/audit", params={"session": session}).json()]


def test_every_command_leaves_requested_and_completed_entries(stack: Stack,
                                                              session_a: str) -> None:
    body = stack.run(session_a, "getfilehash /etc/hostname")
    entries = [e for e in stack.plane.audit.read(command=body["command_id"])]
    assert [e.action for e in entries] == ["command.requested", "command.completed"]
    assert entries[1].details["result_digest"].startswith("sha256:")


def test_unknown_command_is_refused_with_usage_and_audited(stack: Stack, session_a: str) -> None:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/commands", json={"line": "format c:"})
    assert resp.status_code == 400
    assert "unknown command 'format'" in resp.json()["error"]["message"]
    assert ("command.denied", "denied") in _actions(stack, session_a)


def test_bad_arguments_show_the_usage(stack: Stack, session_a: str) -> None:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/commands", json={"line": "kill notapid"})
    assert resp.status_code == 400
    assert resp.json()["error"]["hint"] == "usage: kill PID [--tree]"


def test_missing_path_fails_with_a_clear_error(stack: Stack, session_a: str) -> None:
    body = stack.run(session_a, "getfilehash /no/such/file")
    assert body["status"] == "failed"
    assert body["error"]["code"] == "path_not_found"
    assert "/no/such/file" in body["error"]["message"]
    assert ("command.failed", "failed") in _actions(stack, session_a)


def test_dead_pid_fails_with_a_clear_error(stack: Stack, session_a: str) -> None:
    body = stack.run(session_a, "kill 4194000")
    assert body["status"] == "failed"
    assert body["error"]["code"] == "process_not_found"


def test_unknown_device_cannot_get_a_session(stack: Stack) -> None:
    with stack.client() as http:
        resp = http.post("/sessions", json={"device_id": "no-such-device"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_device"
    denied = stack.plane.audit.read(device="no-such-device")
    assert denied and denied[-1].action == "session.denied"


def test_malformed_device_id_is_refused(stack: Stack) -> None:
    with stack.client() as http:
        resp = http.post("/sessions", json={"device_id": "../../etc"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_device_id"


def test_closed_session_refuses_commands(stack: Stack, session_a: str) -> None:
    with stack.client() as http:
        assert http.delete(f"/sessions/{session_a}").status_code == 200
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/commands", json={"line": "dir /"})
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "session_closed"


@pytest.mark.parametrize("setting", ["session_idle_timeout_s", "session_max_length_s"])
def test_expired_session_refuses_commands(stack: Stack, session_a: str, setting: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert stack.run(session_a, "dir /")["status"] == "completed"
    limit = getattr(stack.plane.settings, setting)
    real_now = clock.now
    if setting == "session_max_length_s":
        # Stay active (touch just under the idle limit) until past the maximum length.
        step = stack.plane.settings.session_idle_timeout_s - 1
        offset = 0.0
        while offset + step < limit:
            offset += step
            monkeypatch.setattr(clock, "now", lambda o=offset: real_now() + o)
            stack.plane.sessions.touch(session_a)
    monkeypatch.setattr(clock, "now", lambda: real_now() + limit + 5)
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/commands", json={"line": "dir /"})
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "session_expired"
    monkeypatch.setattr(clock, "now", real_now)
    with stack.client() as http:  # stays refused once expired
        resp = http.post(f"/sessions/{session_a}/commands", json={"line": "dir /"})
    assert resp.json()["error"]["code"] == "session_expired"


def test_missing_or_wrong_token_is_refused_and_audited(stack: Stack) -> None:
    with stack.client(token="lr_not-a-real-token") as http:
        assert http.get("/devices").status_code == 401
    with stack.client() as http:
        http.headers.pop("Authorization")
        assert http.get("/devices").status_code == 401
    failed = [e for e in stack.plane.audit.read(actor="anonymous") if e.action == "auth.failed"]
    assert len(failed) >= 2


def test_viewer_cannot_open_sessions(stack: Stack, device_a: str) -> None:
    token = stack.user("viewer1", ["viewer"])
    with stack.client(token) as http:
        resp = http.post("/sessions", json={"device_id": device_a})
        assert resp.status_code == 403
        assert "session.open" in resp.json()["error"]["message"]
        assert http.get("/devices").status_code == 200


def test_audit_verify_fails_after_an_entry_is_deleted(stack: Stack, session_a: str) -> None:
    stack.run(session_a, "dir /")
    with stack.client() as http:
        assert http.get("/audit/verify").json()["ok"] is True
    entries = stack.plane.client.xrange(stack.plane.keys.audit, count=3)
    stack.plane.client.xdel(stack.plane.keys.audit, entries[1][0])
    with stack.client() as http:
        verdict = http.get("/audit/verify").json()
    assert verdict["ok"] is False
    assert verdict["problem"]
