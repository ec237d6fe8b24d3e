"""Changing the policy through the API: validated, audited, enforced at once, never a lockout."""

from __future__ import annotations

from tests.stack import Stack

CUSTOM = """\
groups: [group:web, group:finance, critical]
roles:
  auditor:
    permissions: [view]
  admin:
    permissions: [view, session.open, live.read, admin]
"""


def _policy_actions(stack: Stack) -> list[tuple[str, str]]:
    return [(e.action, e.decision) for e in stack.plane.audit.read()
            if e.action.startswith("policy.")]


def test_an_invalid_policy_is_refused_with_line_and_field_and_changes_nothing(
        stack: Stack) -> None:
    with stack.client() as http:
        before = http.get("/policy").json()
        bad = CUSTOM.replace("permissions: [view]\n", "permissions: [view]\n    scopes: [hr]\n")
        resp = http.put("/policy", json={"yaml": bad, "source": "team.yaml"})
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["code"] == "invalid_policy"
        assert error["message"].startswith("team.yaml:5: roles.auditor.scopes[0]: unknown group")
        assert http.get("/policy").json()["digest"] == before["digest"]
    assert _policy_actions(stack)[-1] == ("policy.change.refused", "denied")


def test_a_policy_that_would_lock_every_admin_out_is_refused(stack: Stack) -> None:
    no_admin = CUSTOM.replace("[view, session.open, live.read, admin]",
                              "[view, session.open, live.read]")
    with stack.client() as http:
        resp = http.put("/policy", json={"yaml": no_admin})
        assert resp.status_code == 400
        assert "no user would hold 'admin'" in resp.json()["error"]["message"]
        assert http.get("/policy").json()["yaml"] != no_admin


def test_a_new_policy_applies_at_once_and_is_audited(stack: Stack, device_a: str) -> None:
    token = stack.user("adv-policy", ["advanced"])
    try:
        with stack.client() as http:
            resp = http.put("/policy", json={"yaml": CUSTOM, "source": "custom.yaml"})
            assert resp.status_code == 200, resp.text
            assert "adv-policy:advanced" in resp.json()["orphaned_grants"]
            shown = http.get("/policy").json()
            assert shown["yaml"] == CUSTOM and shown["set_by"] == "admin"
        changed = [e for e in stack.plane.audit.read() if e.action == "policy.changed"][-1]
        assert changed.details["digest"] == shown["digest"]
        assert "yaml" not in changed.details
        # 'advanced' no longer exists: its holder can do nothing, not even list devices.
        with stack.client(token) as http:
            assert http.get("/devices").status_code == 403
            assert http.post("/sessions", json={"device_id": device_a}).status_code == 403
    finally:
        with stack.client() as http:
            from orchestrator.policies.loader import dump_policy
            from orchestrator.policies.model import default_policy

            http.put("/policy", json={"yaml": dump_policy(default_policy())})


def test_only_admins_change_the_policy(stack: Stack) -> None:
    token = stack.user("adv-nochange", ["advanced"])
    with stack.client(token) as http:
        before = http.get("/policy").json()["digest"]
        resp = http.put("/policy", json={"yaml": CUSTOM})
        assert resp.status_code == 403
        assert http.get("/policy").json()["digest"] == before
