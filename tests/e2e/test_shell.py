"""`lr shell` driven by scripts piped into it: it never drops the analyst, only a session that
ended ends it; hints name the shell's forms inside and the CLI's outside; start directory,
aliases, help; and what the analyst who asked for an approved command sees."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli.shell_words import SHELL_COMMANDS
from tasks.registry import REGISTRY
from tests.e2e.cli import Lr, ok
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def device_id(shared_device_id: str) -> str:
    return shared_device_id


@pytest.fixture
def stack(shared_stack: Stack) -> Stack:
    """One stack for this module: each test opens sessions of its own."""
    return shared_stack


class Script(io.BytesIO):
    """Lines piped into the shell, handed over one at a time; `actions[n]` runs just before
    line n is handed over, as another terminal would act meanwhile."""

    def __init__(self, lines: list[str], actions: dict[int, Callable[[], None]]) -> None:
        super().__init__("".join(line + "\n" for line in lines).encode())
        self.actions = actions
        self.served = 0

    def read1(self, size: int | None = -1) -> bytes:
        # The text layer reads with read1 until it has a line: give it exactly one.
        action = self.actions.pop(self.served, None)
        if action is not None:
            action()
        self.served += 1
        return super().readline()

    def read(self, size: int | None = -1) -> bytes:
        return b"" if size == 0 else self.read1()  # read(0): click's probe for bytes


def _newest_session(stack: Stack, device_id: str) -> str:
    """The newest open session on the device: the shell's, while it runs."""
    with stack.client() as http:
        sessions = http.get("/sessions").json()
    return str([s for s in sessions if s["device_id"] == device_id][-1]["id"])


def test_not_found_errors_leave_the_shell_and_its_session_open(
        lr: Lr, stack: Stack, device_id: str, tmp_path: Path) -> None:
    script = "fg 9\ncancel 9\nput nosuch.sh\nrunscript nosuch.sh\nbogus\nfg\ndir /\nexit\n"
    result = lr("shell", device_id, input=script)
    assert result.exit_code == 0, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 6, errors
    assert errors[0].startswith("lr: session S") and "has no job 9 (list them with `jobs`)" in (
        errors[0])
    assert "has no job 9" in errors[1]
    assert "no library file named 'nosuch.sh'" in errors[2]
    assert "no library file named 'nosuch.sh'" in errors[3]
    assert "bogus" in errors[4] and "fg: which job?" in errors[5]
    assert not any("lr jobs" in e or "lr fg" in e for e in errors)  # the shell's forms only
    assert "MODE" in result.stdout and "etc" in result.stdout  # `dir /` still ran
    assert re.search(r"session S[0-9a-f]{8} closed", result.stdout)


def test_the_shell_ends_with_exit_6_only_when_its_session_is_closed_elsewhere(
        lr: Lr, stack: Stack, device_id: str) -> None:
    def close_it() -> None:
        with stack.client() as http:
            sid = _newest_session(stack, device_id)
            assert http.delete(f"/sessions/{sid}").status_code == 200

    script = Script(["fg 3", "dir /", "dir /", "dir /"], {2: close_it})
    result = lr("shell", device_id, input=script)
    assert result.exit_code == 6, result.output
    assert result.stdout.count("MODE") == 1  # one dir ran; the next met the closed session
    assert "closed" in result.stderr.splitlines()[-1]


def test_hints_name_the_shell_form_inside_and_the_cli_form_outside(
        lr: Lr, device_id: str, tmp_path: Path) -> None:
    huge = tmp_path / "huge.img"
    with open(huge, "wb") as f:
        f.truncate(64 * 1024**3)
    inside = ok(lr("shell", device_id, input=f"getfilehash {huge} &\ncancel 1\nexit\n"))
    assert "[1] getfilehash runs in the background" in inside.stdout
    assert "'fg 1' waits for it, 'cancel 1' stops it" in inside.stdout
    assert "[1] getfilehash cancelled" in inside.stdout
    session = json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"]
    outside = ok(lr("run", "--background", session, f"getfilehash {huge}")).stdout
    assert f"'lr fg {session} 1' waits for it, 'lr cancel {session} 1' stops it" in outside
    ok(lr("cancel", session, "1"))
    missing = lr("fg", session, "7")
    assert missing.exit_code == 5 and f"`lr jobs {session}`" in missing.stderr


def test_a_session_starts_at_the_root_or_in_the_directory_given(
        lr: Lr, device_id: str, tmp_path: Path) -> None:
    (tmp_path / "marker-file.txt").write_text("x")
    at_root = ok(lr("shell", device_id, input="dir\nexit\n")).stdout
    assert f"lr {device_id}:/> " in at_root and " etc" in at_root
    there = ok(lr("shell", device_id, "--cwd", str(tmp_path), input="dir\nexit\n")).stdout
    assert f"lr {device_id}:{tmp_path}> " in there and "marker-file.txt" in there
    opened = json.loads(ok(lr("--json", "session", "open", device_id, "--cwd",
                              str(tmp_path))).stdout)
    assert opened["cwd"] == str(tmp_path)
    relative = lr("session", "open", device_id, "--cwd", "var/log")
    assert relative.exit_code == 2
    assert relative.stderr.strip() == ("lr: the start directory 'var/log' is not an absolute "
                                       "path (give a full path on the device, e.g. --cwd "
                                       "/var/log)")


def test_aliases_cls_and_help_from_the_registry(lr: Lr, device_id: str, tmp_path: Path) -> None:
    (tmp_path / "aliased.txt").write_text("x")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        script = (f"ls {tmp_path}\nps --pid {sleeper.pid}\nconnections\ncls\nclear\nhelp\n"
                  "help ls\nexit\n")
        result = ok(lr("shell", device_id, input=script))
    finally:
        sleeper.kill()
        sleeper.wait()
    out = result.stdout
    assert "aliased.txt" in out  # ls = dir
    assert re.search(rf"^\s*{sleeper.pid}\s.*sleep 60", out, re.M)  # ps = processes
    assert "PROTO" in out and "LOCAL" in out  # connections = netstat
    for spec in REGISTRY.values():  # help is generated from the registry
        assert spec.usage in out
    for usage, _ in SHELL_COMMANDS.values():
        assert usage in out
    assert "usage: dir" in out  # help for an alias
    assert result.stderr == ""


def test_cat_runs_the_cat_command_or_says_what_to_do(
        lr: Lr, device_id: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("first line of the notes\n")
    result = ok(lr("shell", device_id, input=f"cat {notes}\nexit\n"))
    if "cat" in REGISTRY:
        assert "first line of the notes" in result.stdout and result.stderr == ""
    else:
        assert result.stderr.strip() == (
            "lr: cat: this orchestrator has no cat command (copy the file with 'getfile "
            "PATH', then read it with 'lr evidence get')")


def test_the_requester_of_an_approved_command_sees_its_result(
        lr: Lr, stack: Stack, device_id: str) -> None:
    ok(lr("admin", "device", "tag", device_id, "critical"))
    alice, bob = stack.user("alice", ["advanced"]), stack.user("bob", ["advanced"])
    victims = [subprocess.Popen(["sleep", "300"]) for _ in range(2)]
    try:
        session = json.loads(ok(lr("--json", "session", "open", device_id,
                                   token=alice)).stdout)["id"]
        held = lr("--json", "run", session, f"kill {victims[0].pid}", token=alice)
        assert held.exit_code == 13, held.output
        command_id = json.loads(held.stdout)["command_id"]
        assert f"`lr command show {command_id} --wait`" in held.stderr
        assert "pending-approval" in ok(lr("command", "show", command_id, token=alice)).stdout
        ok(lr("approve", command_id, token=bob))
        shown = ok(lr("command", "show", command_id, "--wait", token=alice)).stdout
        assert str(victims[0].pid) in shown and "SIGTERM" in shown

        def approve_job_1() -> None:
            with stack.client(alice) as http:
                (shell_session,) = [s["id"] for s in http.get("/sessions").json()
                                    if s["id"] != session and s["user"] == "alice"]
                (job,) = http.get(f"/sessions/{shell_session}/jobs").json()
            with stack.client(bob) as http:
                approved = http.post(f"/commands/{job['command_id']}/approve")
                assert approved.status_code == 200, approved.text

        script = Script([f"kill {victims[1].pid}", "fg 1", "exit"], {1: approve_job_1})
        result = ok(lr("shell", device_id, input=script, token=alice))
        assert "waits for approval by a second person" in result.stderr
        assert "'fg 1' shows its result once approved" in result.stderr
        assert str(victims[1].pid) in result.stdout and "SIGTERM" in result.stdout
        for victim in victims:
            assert victim.wait(timeout=10) is not None
    finally:
        for victim in victims:
            victim.kill()
            victim.wait()
