"""The `lr` CLI as an analyst drives it, against a live API and a real agent process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.api.server import free_port
from orchestrator.cli.main import main
from orchestrator.cli.render import render_record
from tests.e2e.cli import Lr
from tests.e2e.cli import cli_env as _env
from tests.e2e.cli import ok as _ok
from tests.stack import Stack, new_device_id

pytestmark = pytest.mark.integration

def _open(lr: Lr, device_id: str) -> str:
    return str(json.loads(_ok(lr("--json", "session", "open", device_id)).stdout)["id"])


def test_devices_json_lists_the_device_online(lr: Lr, device_id: str) -> None:
    devices = json.loads(_ok(lr("--json", "devices")).stdout)
    (device,) = [d for d in devices if d["id"] == device_id]
    assert device["online"] is True


def test_devices_table_shows_the_device(lr: Lr, device_id: str) -> None:
    out = _ok(lr("devices")).stdout
    assert out.splitlines()[0].split()[:2] == ["ID", "ONLINE"]
    assert any(line.split()[:2] == [device_id, "yes"] for line in out.splitlines())


def test_session_open_json_returns_an_id_that_session_list_shows(lr: Lr, device_id: str) -> None:
    session_id = _open(lr, device_id)
    assert session_id.startswith("S")
    assert session_id in _ok(lr("session", "list")).stdout


def test_run_getfilehash_equals_sha256sum(lr: Lr, device_id: str, tmp_path: Path) -> None:
    subject = tmp_path / "invoice2025.exe"
    subject.write_bytes(b"MZ" + bytes(range(256)) * 4099)
    expected = subprocess.run(
        ["sha256sum", str(subject)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    session_id = _open(lr, device_id)
    record = json.loads(_ok(lr("--json", "run", session_id, f"getfilehash {subject}")).stdout)
    assert record["command_id"]
    assert record["status"] == "completed"
    assert record["result"]["sha256"] == expected


def test_run_dir_prints_the_files_the_test_created(lr: Lr, device_id: str, tmp_path: Path) -> None:
    for name in ("alpha.txt", "beta.bin"):
        (tmp_path / name).write_text(name)
    (tmp_path / "gamma-link").symlink_to(tmp_path / "alpha.txt")
    session_id = _open(lr, device_id)
    out = _ok(lr("run", session_id, f"dir {tmp_path}")).stdout
    assert "alpha.txt" in out and "beta.bin" in out
    assert f"gamma-link -> {tmp_path / 'alpha.txt'}" in out


def test_run_a_failing_command_exits_8_with_one_line(
    lr: Lr, device_id: str, tmp_path: Path
) -> None:
    session_id = _open(lr, device_id)
    result = lr("run", session_id, f"dir {tmp_path / 'missing'}")
    assert result.exit_code == 8, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("lr: dir failed: ")


def test_unknown_command_fails_with_one_stderr_line(lr: Lr, device_id: str) -> None:
    session_id = _open(lr, device_id)
    result = lr("run", session_id, "frobnicate /etc")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("lr: ") and "frobnicate" in line
    assert "Traceback" not in result.output


def test_json_errors_also_go_to_stdout(lr: Lr, device_id: str) -> None:
    session_id = _open(lr, device_id)
    result = lr("--json", "run", session_id, "frobnicate")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "unknown_command"


def test_bad_token_exits_3(lr: Lr) -> None:
    for token in ("lr_" + "A" * 43, "not-a-token"):
        result = lr("devices", token=token)
        assert result.exit_code == 3, result.output
        assert len(result.stderr.splitlines()) == 1
        assert token not in result.output


def test_run_after_session_close_exits_6(lr: Lr, device_id: str) -> None:
    session_id = _open(lr, device_id)
    assert "closed" in _ok(lr("session", "close", session_id)).stdout
    result = lr("run", session_id, "dir /")
    assert result.exit_code == 6, result.output
    assert "closed" in result.stderr


def test_audit_show_session_has_requested_and_completed(lr: Lr, device_id: str) -> None:
    session_id = _open(lr, device_id)
    _ok(lr("run", session_id, "dir /"))
    entries = json.loads(_ok(lr("--json", "audit", "show", "--session", session_id)).stdout)
    actions = [e["action"] for e in entries]
    assert "command.requested" in actions and "command.completed" in actions
    table = _ok(lr("audit", "show", "--session", session_id)).stdout
    assert "command.requested" in table and "command.completed" in table


def test_audit_verify_exits_0_on_a_sound_chain(lr: Lr, device_id: str) -> None:
    _open(lr, device_id)
    assert "ok" in _ok(lr("audit", "verify")).stdout


def test_audit_verify_exits_12_when_an_entry_is_deleted(
    lr: Lr, stack: Stack, device_id: str
) -> None:
    _open(lr, device_id)
    _open(lr, device_id)
    client, audit_key = stack.plane.client, stack.plane.keys.audit
    oldest: Any = client.xrange(audit_key, count=1)
    client.xdel(audit_key, oldest[0][0])
    result = lr("audit", "verify")
    assert result.exit_code == 12, result.output
    (line,) = result.stderr.splitlines()
    assert "broken" in line


def test_shell_runs_lines_from_stdin_and_closes_its_session(
    lr: Lr, stack: Stack, device_id: str
) -> None:
    result = lr("shell", device_id, input="cd /tmp\nhelp\ndir\nnope\nexit\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"lr {device_id}:/tmp> " in out
    assert "getfilehash PATH" in out and "List processes" in out  # the help list
    assert "MODE" in out and "NAME" in out  # a dir listing
    (error,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert error.startswith("lr: ") and "nope" in error
    with stack.client() as http:
        sessions = http.get("/sessions", params={"all": "true"}).json()
    (session,) = [s for s in sessions if s["device_id"] == device_id]
    assert session["state"] == "closed"
    assert session["cwd"] == "/tmp"


def test_unreachable_orchestrator_exits_11_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["--api-url", url, "devices"], env=_env(tmp_path))
    assert result.exit_code == 11
    assert result.stderr.strip() == (
        f"lr: cannot reach the orchestrator at {url} "
        "(start it with 'lr orchestrator serve' or set LR_API_URL)"
    )


def test_whoami_names_the_token_owner(lr: Lr, stack: Stack) -> None:
    token = stack.user("carol", ["responder"])
    assert _ok(lr("whoami", token=token)).stdout.strip() == "carol (roles: responder)"


def test_a_command_beyond_the_role_exits_4(lr: Lr, stack: Stack, device_id: str) -> None:
    token = stack.user("rita", ["responder"])
    session_id = str(
        json.loads(_ok(lr("--json", "session", "open", device_id, token=token)).stdout)["id"]
    )
    result = lr("run", session_id, "kill 999999", token=token)
    assert result.exit_code == 4, result.output
    assert "live.remediate" in result.stderr


def test_a_truncated_result_ends_with_the_marker(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for i in range(200):
        (tmp_path / f"file-{i:03}.txt").write_text("x")
    device_id = new_device_id("trunc")
    with stack_factory([device_id], output_max_bytes=4000) as st:
        runner = CliRunner()
        base = ["--api-url", st.url, "--token", st.token]
        opened = runner.invoke(main, [*base, "--json", "session", "open", device_id])
        session_id = json.loads(_ok(opened).stdout)["id"]
        result = _ok(runner.invoke(main, [*base, "run", session_id, f"dir {tmp_path}"]))
    lines = result.stdout.splitlines()
    assert lines[-1] == "(output truncated: limit reached)"
    assert 2 < len(lines) < 200


def test_names_from_the_endpoint_cannot_reach_the_terminal_raw() -> None:
    record = {
        "command": "dir",
        "status": "completed",
        "truncated": False,
        "result": {
            "path": "/tmp",
            "entries": [
                {
                    "name": "evil\x1b[2Jname\n",
                    "type": "file",
                    "size_bytes": 1,
                    "mode": "-rw-r--r--",
                    "owner": "root",
                    "group": "root",
                    "mtime": 0.0,
                }
            ],
        },
    }
    out = render_record(record)
    assert "\x1b" not in out and "evil\\x1b[2Jname\\n" in out


def test_a_failed_record_renders_as_one_line_with_its_hint() -> None:
    record = {
        "command": "kill",
        "status": "failed",
        "error": {"code": "protected_process", "message": "refusing pid 1", "hint": "not init"},
    }
    assert render_record(record) == "kill failed: refusing pid 1 (not init)"
