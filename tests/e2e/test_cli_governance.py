"""The admin and approval commands of `lr`, as an admin and two analysts drive them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.policies.model import default_policy
from tests.e2e.cli import Lr, ok
from tests.stack import Stack, register_offline

pytestmark = pytest.mark.integration


def test_admin_adds_a_scoped_user_gives_a_token_and_revokes_it(lr: Lr, stack: Stack) -> None:
    out = ok(lr("admin", "user", "add", "dana", "--role", "advanced", "--scope", "group:web"))
    assert out.stdout.strip() == "created user dana (roles: advanced@group:web)"
    made = json.loads(ok(lr("--json", "admin", "token", "create", "dana")).stdout)
    token = made["token"]
    assert token.startswith("lr_") and set(made) == {"user", "token", "token_id", "expires_at"}
    assert ok(lr("whoami", token=token)).stdout.strip() == "dana (roles: advanced@group:web)"
    ok(lr("admin", "user", "grant", "dana", "--role", "viewer"))
    listed = ok(lr("admin", "user", "list")).stdout
    assert any(line.split()[:3] == ["dana", "advanced@group:web,", "viewer"]
               for line in listed.splitlines()), listed
    assert "revoked token" in ok(lr("admin", "token", "revoke", made["token_id"])).stdout
    assert lr("whoami", token=token).exit_code == 3


def test_plain_token_create_prints_only_the_token_on_stdout(lr: Lr) -> None:
    ok(lr("admin", "user", "add", "erin", "--role", "viewer"))
    result = ok(lr("admin", "token", "create", "erin"))
    assert result.stdout.strip().startswith("lr_") and len(result.stdout.split()) == 1
    assert ok(lr("whoami", token=result.stdout.strip())).stdout.startswith("erin ")


def test_a_non_admin_cannot_add_users_and_exits_4(lr: Lr, stack: Stack) -> None:
    token = stack.user("frank", ["advanced"])
    result = lr("admin", "user", "add", "mallory", "--role", "admin", token=token)
    assert result.exit_code == 4
    assert "lacks permission 'admin'" in result.stderr


def test_an_unknown_role_is_a_usage_error(lr: Lr) -> None:
    result = lr("admin", "user", "add", "gina", "--role", "superuser")
    assert result.exit_code == 2
    assert "unknown role 'superuser'" in result.stderr


def test_policy_check_names_line_and_field(lr: Lr, tmp_path: Path) -> None:
    bad = tmp_path / "team.yaml"
    bad.write_text("roles:\n  viewer:\n    permissions: [view]\n    inherits: [ghost]\n")
    result = lr("admin", "policy", "check", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:4: roles.viewer.inherits[0]: unknown role 'ghost'" in result.stderr
    good = tmp_path / "ok.yaml"
    good.write_text(ok(lr("admin", "policy", "show")).stdout)
    roles = len(default_policy().roles)
    checked = ok(lr("admin", "policy", "check", str(good))).stdout
    assert f"ok ({roles} roles, 1 approval rules)" in checked


def test_a_held_command_waits_and_a_second_person_approves_it(
        lr: Lr, stack: Stack, device_id: str) -> None:
    ok(lr("admin", "device", "tag", device_id, "critical", "group:web"))
    row = [line.split() for line in ok(lr("devices")).stdout.splitlines()
           if line.startswith(device_id)]
    assert "critical,group:web" in row[0]
    alice, bob = stack.user("alice", ["advanced"]), stack.user("bob", ["advanced"])
    session = json.loads(ok(lr("--json", "session", "open", device_id, token=alice)).stdout)["id"]
    victim = subprocess.Popen(["sleep", "300"])
    try:
        held = lr("--json", "run", session, f"kill {victim.pid}", token=alice)
        assert held.exit_code == 13, held.output
        command_id = json.loads(held.stdout)["command_id"]
        assert f"lr approve {command_id}" in held.stderr
        assert command_id in ok(lr("approvals", token=bob)).stdout
        assert lr("approve", command_id, token=alice).exit_code == 4
        done = ok(lr("approve", command_id, token=bob))
        assert str(victim.pid) in done.stdout
        assert victim.wait(timeout=10) is not None
    finally:
        victim.kill()
        victim.wait()
    again = lr("deny", command_id, token=bob)
    assert again.exit_code == 6 and "not waiting for approval" in again.stderr


def test_admin_removes_a_decommissioned_device_and_an_online_one_is_refused(
        lr: Lr, stack: Stack, device_id: str) -> None:
    gone = register_offline(stack)
    out = ok(lr("admin", "device", "remove", gone))
    assert out.stdout.strip() == f"{gone}: removed (0 waiting commands dropped)"
    assert gone not in ok(lr("devices")).stdout
    refused = lr("admin", "device", "remove", device_id)
    assert refused.exit_code == 2
    assert "is online" in refused.output and "Traceback" not in refused.output
    assert device_id in ok(lr("devices")).stdout
