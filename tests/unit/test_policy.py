"""The policy file: validation errors name line and field; grants and scopes decide correctly."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.policies.loader import load_policy_file, parse_policy
from orchestrator.policies.model import PERM_ADMIN, PERM_SESSION, PERM_VIEW, Grant, default_policy
from orchestrator.policies.rbac import authorize, check_grant, is_allowed
from tasks.errors import PermissionDeniedError, PolicyError, UsageError
from tasks.registry import PERM_COLLECT, PERM_EXECUTE, PERM_ISOLATE, PERM_READ, PERM_REMEDIATE

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"

SCOPED = """\
groups: [group:web, group:finance, critical]
roles:
  viewer:
    permissions: [view]
  responder:
    inherits: [viewer]
    permissions: [session.open, live.read]
  web-responder:
    inherits: [responder]
    scopes: [group:web]
  admin:
    inherits: [responder]
    permissions: [admin, live.isolate]
approvals:
  - commands: [kill]
    device_tags: [group:finance]
"""


def test_the_example_file_is_the_built_in_default() -> None:
    assert load_policy_file(EXAMPLE) == default_policy()


def test_default_roles_grant_what_the_design_says() -> None:
    policy = default_policy()
    assert policy.role_permissions("viewer") == {PERM_VIEW}
    assert policy.role_permissions("responder") == {PERM_VIEW, PERM_SESSION, PERM_READ}
    assert policy.role_permissions("advanced") == {
        PERM_VIEW, PERM_SESSION, PERM_READ, PERM_COLLECT, PERM_EXECUTE, PERM_REMEDIATE}
    assert policy.role_permissions("admin") == policy.role_permissions("advanced") | {
        PERM_ISOLATE, PERM_ADMIN}
    rule = policy.approval_rule("kill", ["critical"])
    assert rule is not None and policy.approval_rule("kill", ["group:web"]) is None


@pytest.mark.parametrize(("text", "line", "expected"), [
    (SCOPED.replace("inherits: [responder]\n    scopes", "inherits: [respnder]\n    scopes"),
     9, "roles.web-responder.inherits[0]: unknown role 'respnder'"),
    (SCOPED.replace("scopes: [group:web]", "scopes: [group:wbe]"),
     10, "roles.web-responder.scopes[0]: unknown group 'group:wbe'"),
    (SCOPED.replace("device_tags: [group:finance]", "device_tags: [finance]"),
     16, "approvals[0].device_tags[0]: unknown group 'finance'"),
    (SCOPED.replace("commands: [kill]", "commands: [kil]"),
     15, "approvals[0].commands[0]: unknown command 'kil'"),
    (SCOPED.replace("permissions: [view]", "permissions: [veiw]"),
     4, "roles.viewer.permissions[0]: unknown permission 'veiw'"),
    (SCOPED.replace("  viewer:\n", "  viewer:\n    colour: red\n"),
     4, "roles.viewer.colour: Extra inputs are not permitted"),
    (SCOPED.replace("permissions: [view]", "permissions: []"),
     3, "roles.viewer: role 'viewer' grants nothing"),
    ("roles: {}\n", 1, "the policy defines no roles: it grants nothing"),
    ("roles:\n  a: {permissions: [view]\n", 3, "not valid YAML"),
])
def test_a_bad_policy_names_line_and_field(text: str, line: int, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="team.yaml")
    assert caught.value.message.startswith(f"team.yaml:{line}: ")
    assert expected in caught.value.message
    assert caught.value.http_status == 400


def test_a_policy_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(PolicyError, match="a policy is a mapping"):
        parse_policy("- just\n- a list\n")


def test_a_scoped_grant_applies_only_on_devices_of_its_group() -> None:
    policy = default_policy()
    web = [Grant(role="advanced", scope="group:web")]
    assert is_allowed(policy, web, PERM_SESSION, ["group:web", "linux"])
    assert not is_allowed(policy, web, PERM_SESSION, ["group:finance"])
    assert not is_allowed(policy, web, PERM_SESSION, [])
    # Without a device (listing), the grant still counts: a scoped analyst may list devices.
    assert is_allowed(policy, web, PERM_VIEW)


def test_a_user_may_hold_different_roles_on_different_groups() -> None:
    policy = default_policy()
    grants = [Grant(role="advanced", scope="group:web"), Grant(role="viewer")]
    assert is_allowed(policy, grants, PERM_REMEDIATE, ["group:web"])
    assert not is_allowed(policy, grants, PERM_REMEDIATE, ["group:finance"])
    assert not is_allowed(policy, grants, PERM_SESSION, ["group:finance"])
    assert is_allowed(policy, grants, PERM_VIEW, ["group:finance"])


def test_a_role_bound_to_groups_applies_only_there() -> None:
    policy = parse_policy(SCOPED)
    grants = [Grant(role="web-responder")]
    assert is_allowed(policy, grants, PERM_READ, ["group:web"])
    assert not is_allowed(policy, grants, PERM_READ, ["group:finance"])


def test_admin_needs_an_unscoped_grant() -> None:
    policy = default_policy()
    assert is_allowed(policy, [Grant(role="admin")], PERM_ADMIN)
    assert not is_allowed(policy, [Grant(role="admin", scope="group:web")], PERM_ADMIN)
    # ... but a scoped admin still administers devices of its group.
    assert is_allowed(policy, [Grant(role="admin", scope="group:web")], PERM_ISOLATE,
                      ["group:web"])


def test_a_denial_names_the_missing_permission_and_the_device() -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        authorize(default_policy(), "carol", [Grant(role="responder")], PERM_REMEDIATE,
                  "web-1", ["group:web"])
    message = caught.value.message
    assert "'live.remediate'" in message and "'web-1'" in message and "group:web" in message
    assert "responder" in message


def test_unknown_roles_grant_nothing() -> None:
    assert not is_allowed(default_policy(), [Grant(role="superuser")], PERM_VIEW)


def test_grants_are_checked_against_the_policy() -> None:
    policy = parse_policy(SCOPED)
    assert check_grant(policy, Grant(role="viewer", scope="critical"))
    with pytest.raises(UsageError, match="unknown role 'root'"):
        check_grant(policy, Grant(role="root"))
    with pytest.raises(UsageError, match="unknown group 'group:hr'"):
        check_grant(policy, Grant(role="viewer", scope="group:hr"))
