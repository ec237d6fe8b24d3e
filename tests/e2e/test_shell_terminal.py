"""`lr shell` at a real terminal: Ctrl-C cancels the running command on the agent, Ctrl-Z
leaves it running as a job, the prompt shows the directory, Tab completes the device's paths."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.e2e.cli import Lr, ok
from tests.e2e.terminal import CTRL_C, CTRL_Z, TAB, Terminal
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def device_id(shared_device_id: str) -> str:
    return shared_device_id


@pytest.fixture
def stack(shared_stack: Stack) -> Stack:
    """One stack for this module: each test opens sessions of its own."""
    return shared_stack

#: A script that says which process it is, then runs long (well below its time limit).
SLEEPER = 'echo $$ > "$1"\nexec sleep 25\n'


@pytest.fixture
def sleeper(lr: Lr, tmp_path: Path) -> str:
    script = tmp_path / "sleeper.sh"
    script.write_text(SLEEPER)
    ok(lr("library", "add", str(script), "--replace"))  # the stack is the module's
    return "sleeper.sh"


@dataclass
class Shell:
    term: Terminal
    session_id: str

    def job(self, stack: Stack, job: int) -> dict[str, object]:
        """Job `job` of the shell's session, as the API shows it."""
        with stack.client() as http:
            record: dict[str, object] = http.get(
                f"/sessions/{self.session_id}/jobs/{job}").json()
        return record


@pytest.fixture
def sh(stack: Stack, device_id: str, tmp_path: Path) -> Iterator[Shell]:
    """`lr shell DEVICE --cwd TMP` on a terminal, as the stack's admin."""
    args = ["--api-url", stack.url, "--token", stack.token, "shell", device_id,
            "--cwd", str(tmp_path)]
    with Terminal.lr(args, tmp_path / "lr-home") as term:
        session_id = term.expect(r"session (S[0-9a-f]{8}) on").group(1)
        term.expect(rf"lr {device_id}:{tmp_path}> ")
        yield Shell(term, session_id)


def _script_pid(pid_file: Path, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError("the script never started")


def _gone(pid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_cancels_the_running_command_on_the_agent(
        sh: Shell, stack: Stack, device_id: str, sleeper: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    sh.term.send(f"runscript {sleeper} -- {pid_file}\r")
    pid = _script_pid(pid_file)
    sh.term.send(CTRL_C)
    sh.term.expect(r"\[1\] runscript cancelled \(command [0-9a-f-]+\); the agent stops it")
    sh.term.expect(rf"lr {device_id}:{tmp_path}> ")
    assert sh.job(stack, 1)["status"] == "cancelled"
    assert _gone(pid), f"the script's process {pid} still runs"
    sh.term.send("exit\r")
    sh.term.expect(r"session S[0-9a-f]{8} closed")
    assert sh.term.wait() == 0


def test_ctrl_z_leaves_the_command_running_as_a_job(
        sh: Shell, stack: Stack, device_id: str, sleeper: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    sh.term.send(f"runscript {sleeper} -- {pid_file}\r")
    pid = _script_pid(pid_file)
    sh.term.send(CTRL_Z)
    sh.term.expect(r"\[1\] runscript runs in the background \(command [0-9a-f-]+\); "
                 r"'fg 1' waits for it, 'cancel 1' stops it")
    sh.term.expect(rf"lr {device_id}:{tmp_path}> ")
    assert sh.job(stack, 1)["status"] == "running"
    assert psutil.pid_exists(pid)
    sh.term.send("jobs\r")
    sh.term.expect(r"1\s+running\s+[0-9a-f-]+\s+runscript sleeper.sh")
    sh.term.send("fg 1\r")
    time.sleep(0.5)
    sh.term.send(CTRL_C)  # fg is a foreground wait like any other
    sh.term.expect(r"\[1\] runscript cancelled")
    assert _gone(pid)
    sh.term.send("exit\r")
    assert sh.term.wait() == 0


def test_tab_completes_commands_and_the_devices_paths(
        sh: Shell, device_id: str, tmp_path: Path) -> None:
    (tmp_path / "evidence-dir").mkdir()
    (tmp_path / "evidence-dir" / "inner-notes.txt").write_text("x")
    (tmp_path / "alphabet.txt").write_text("x")
    sh.term.send("getfileh" + TAB)
    sh.term.expect("getfilehash ")
    sh.term.send("alph" + TAB)  # relative to the session's directory
    sh.term.expect("alphabet.txt ")
    sh.term.send("\r")
    sh.term.expect(r"sha256\s+[0-9a-f]{64}")
    sh.term.send("cd evid" + TAB)
    sh.term.expect("evidence-dir/")
    sh.term.send("\r")
    sh.term.expect(rf"lr {device_id}:{tmp_path}/evidence-dir> ")  # the prompt follows cd
    sh.term.send(f"fileinfo {tmp_path}/evidence-dir/inn" + TAB)  # absolute
    sh.term.expect("inner-notes.txt ")
    sh.term.send("\r")
    sh.term.expect("inner-notes.txt")
    sh.term.send("exit\r")
    assert sh.term.wait() == 0
