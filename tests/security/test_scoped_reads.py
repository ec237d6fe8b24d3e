"""Reads are scoped like writes: a grant on `group:web` reveals nothing of other devices.

Each route is asked by a real user over HTTP; the outside device's session, commands, jobs,
approvals and audit entries must be refused (403, audited) or left out of listings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture(scope="module")
def world(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys) -> Iterator[tuple[Stack, str, str]]:  # type: ignore[no-untyped-def]
    """Two devices, `web` tagged group:web and `fin` tagged group:finance and critical."""
    web, fin = new_device_id("web"), new_device_id("fin")
    with own_prefix_stack(redis_url, [web, fin], tmp_path_factory.mktemp("scoped"),
                          signing=signing_keys, command_expiry_s=3.0) as st:
        st.tag(web, "group:web")
        st.tag(fin, "group:finance", "critical")
        yield st, web, fin


@pytest.fixture(scope="module")
def outside(world: tuple[Stack, str, str]) -> dict[str, str]:
    """What the admin did on the finance device: a session, a command, a job, a held kill."""
    st, _, fin = world
    session = st.open_session(fin)
    done = st.run(session, "dir /")
    assert done["status"] == "completed", done
    with st.client() as http:
        job = http.post(f"/sessions/{session}/commands", json={"line": "dir /tmp &"}).json()
    held = st.run(session, "kill 4194000")  # critical device: waits for a second person
    assert held["status"] == "pending-approval", held
    return {"session": session, "command": done["command_id"], "job": str(job["job"]),
            "held": held["command_id"]}


@pytest.fixture(scope="module")
def web_responder(world: tuple[Stack, str, str]) -> str:
    st, _, _ = world
    return st.user("webby", ["responder"], scope="group:web")


def _denials(st: Stack, actor: str) -> list[str]:
    return [e.target for e in st.plane.audit.read(actor=actor)
            if e.action == "access.denied" and e.decision == "denied"]


@pytest.mark.parametrize("route", [
    "/commands/{command}",
    "/sessions/{session}",
    "/sessions/{session}/jobs",
    "/sessions/{session}/jobs/{job}",
    "/commands/{held}",
])
def test_a_scoped_user_is_refused_what_lies_outside_their_group(
        world: tuple[Stack, str, str], outside: dict[str, str], web_responder: str,
        route: str) -> None:
    st, _, fin = world
    path = route.format(**outside)
    with st.client(web_responder) as http:
        resp = http.get(path)
    assert resp.status_code == 403, resp.text
    body = resp.json()["error"]
    assert body["code"] == "permission_denied"
    assert fin in body["message"] and "'view'" in body["message"]
    assert "result" not in resp.text and "dir /" not in resp.text
    assert path in _denials(st, "webby")


def test_listings_leave_out_other_groups_devices(
        world: tuple[Stack, str, str], outside: dict[str, str], web_responder: str) -> None:
    st, web, fin = world
    own = st.open_session(web, token=web_responder)
    mine = st.run(own, "dir /", token=web_responder)
    assert mine["status"] == "completed", mine
    with st.client(web_responder) as http:
        sessions = http.get("/sessions", params={"all": "true"}).json()
        audit = http.get("/audit").json()
        audit_fin = http.get("/audit", params={"device": fin}).json()
        approvals = http.get("/approvals").json()
        devices = http.get("/devices").json()
    assert {s["device_id"] for s in sessions} == {web}
    assert own in {s["id"] for s in sessions}
    assert audit_fin == []
    assert audit and all(e["details"].get("device") == web for e in audit)
    assert mine["command_id"] in {e["details"].get("command_id") for e in audit}
    assert approvals == []
    assert [d["id"] for d in devices] == [web]
    # The admin, unscoped, sees both devices' sessions and the held command.
    with st.client() as http:
        everything = http.get("/sessions", params={"all": "true"}).json()
        pending = http.get("/approvals").json()
    assert {web, fin} <= {s["device_id"] for s in everything}
    assert outside["held"] in {r["command_id"] for r in pending}


def test_the_whole_stream_needs_an_unscoped_view(
        world: tuple[Stack, str, str], web_responder: str) -> None:
    st, _, _ = world
    with st.client(web_responder) as http:
        resp = http.get("/audit/export")
    assert resp.status_code == 403
    assert "every device" in resp.json()["error"]["message"]
    viewer = st.user("globalviewer", ["viewer"])
    with st.client(viewer) as http:
        assert http.get("/audit/export").status_code == 200


def test_a_read_inside_the_group_is_allowed_and_audited(
        world: tuple[Stack, str, str], web_responder: str) -> None:
    st, web, _ = world
    session = st.open_session(web, token=web_responder)
    with st.client(web_responder) as http:
        resp = http.get(f"/sessions/{session}")
    assert resp.status_code == 200 and resp.json()["device_id"] == web
    allowed = [e for e in st.plane.audit.read(actor="webby")
               if e.action == "access.allowed" and e.target == f"/sessions/{session}"]
    assert allowed and allowed[-1].details["device"] == web
    assert allowed[-1].details["permission"] == "view"


def test_cancel_needs_the_commands_own_permissions_not_less(
        world: tuple[Stack, str, str], outside: dict[str, str]) -> None:
    """A responder on every device may not cancel an admin's job on a session not theirs."""
    st, _, _ = world
    token = st.user("resp-everywhere", ["responder"])
    with st.client(token) as http:
        resp = http.post(f"/sessions/{outside['session']}/jobs/{outside['job']}/cancel")
    assert resp.status_code == 403
    refused = [e for e in st.plane.audit.read(actor="resp-everywhere")
               if e.action == "job.cancel_refused"]
    assert refused and refused[-1].details["reason"] == "permission_denied"


@pytest.mark.parametrize("path", ["/audit?sesion={session}", "/sessions?al=true",
                                  "/commands/{command}?verbose=1"])
def test_a_query_parameter_a_route_does_not_take_is_refused_not_ignored(
        world: tuple[Stack, str, str], outside: dict[str, str], path: str) -> None:
    """A misspelt filter must not widen a read: `/audit?sesion=S` would otherwise list every
    entry instead of one session's."""
    st, _, _ = world
    with st.client() as http:
        resp = http.get(path.format(**outside))
        assert resp.status_code == 400, resp.text
        message = resp.json()["error"]["message"]
        unknown = path.split("?")[1].split("=")[0]
        assert f"unknown query parameter {unknown!r}" in message
        assert "takes:" in message
        if path.startswith("/audit"):
            assert "session" in message  # what it does take
            spelt = http.get("/audit", params={"session": outside["session"]})
            assert spelt.status_code == 200
            entries = spelt.json()
            assert entries and all(e["details"].get("session") == outside["session"]
                                   for e in entries)


def test_the_command_route_refuses_query_parameters(
        world: tuple[Stack, str, str], outside: dict[str, str]) -> None:
    st, _, _ = world
    with st.client() as http:
        resp = http.post(f"/sessions/{outside['session']}/commands?background=true",
                         json={"line": "dir /"})
    assert resp.status_code == 400, resp.text
    assert "unknown query parameter 'background'" in resp.json()["error"]["message"]
