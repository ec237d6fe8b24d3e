"""The bounded runner under runscript, on real processes: limits, capture, clean-up."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest

from tasks.errors import UnsupportedOnEndpointError
from worker_agent.script_runner import Captured, run_bounded
from worker_agent.scripts import _text, choose_interpreter, script_env, script_kind


def _gone(pid: int, within_s: float = 5.0) -> bool:
    """True once `pid` has ended (a zombie waiting for its reaper counts as ended)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _sh(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "s.sh"
    script.write_text(body)
    return ["/bin/sh", str(script)]


def test_exit_code_and_both_streams_are_captured(tmp_path: Path) -> None:
    argv = _sh(tmp_path, 'echo "out $1"; echo "err $2" >&2; exit 3\n')
    outcome = run_bounded([*argv, "a", "b c"], cwd=tmp_path, env=script_env(os.environ),
                          timeout_s=10, keep_bytes=1000)
    assert outcome.exit_code == 3
    assert not outcome.timed_out
    assert outcome.stdout == Captured(b"out a\n", 6)
    assert outcome.stderr == Captured(b"err b c\n", 8)


def test_a_script_past_its_limit_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A child in the script's group, and one that left it (setsid): both must end.
    argv = _sh(tmp_path, f"sleep 300 & echo $! > {pids}\n"
                         f"setsid sleep 301 & echo $! >> {pids}\n"
                         "sleep 302\n")
    started = time.monotonic()
    outcome = run_bounded(argv, cwd=tmp_path, env=script_env(os.environ), timeout_s=1.0,
                          keep_bytes=1000)
    assert outcome.timed_out
    assert outcome.exit_code is None
    assert time.monotonic() - started < 10
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    for pid in children:
        assert _gone(pid), f"pid {pid} outlived the script"


def test_what_a_finished_script_left_running_is_stopped(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    argv = _sh(tmp_path, f"sleep 300 > /dev/null 2>&1 & echo $! > {pids}\nexit 0\n")
    outcome = run_bounded(argv, cwd=tmp_path, env=script_env(os.environ), timeout_s=10,
                          keep_bytes=1000)
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert _gone(int(pids.read_text()))


def test_output_over_the_limit_is_read_to_its_end_but_only_the_start_kept(
        tmp_path: Path) -> None:
    five_mb = 5 * 1024 * 1024
    argv = [sys.executable, "-c",
            f"import sys; sys.stdout.buffer.write(b'x' * {five_mb}); sys.stdout.flush()"]
    outcome = run_bounded(argv, cwd=tmp_path, env=script_env(os.environ), timeout_s=20,
                          keep_bytes=4096)
    assert outcome.exit_code == 0
    assert outcome.stdout.total_bytes == five_mb
    assert outcome.stdout.kept == b"x" * 4096
    assert outcome.stdout.truncated
    text, cut = _text(outcome.stdout, 4096 + 200)
    assert cut
    assert text.startswith("x" * 100)
    assert text.endswith(f"[output truncated: {five_mb} bytes written, 4096 kept]")


def test_control_bytes_are_cut_further_so_the_escaped_text_fits() -> None:
    text, cut = _text(Captured(b"\x01" * 1000, 1000), 1000)
    assert cut
    assert len(text.split("\n[output truncated")[0]) * 6 <= 1000


def test_the_script_environment_leaves_the_agents_settings_behind() -> None:
    env = script_env({"PATH": "/bin", "LR_REDIS_URL": "redis://:pw@h", "HOME": "/root",
                      "LC_ALL": "C", "AWS_SECRET_ACCESS_KEY": "k"})
    assert env == {"PATH": "/bin", "HOME": "/root", "LC_ALL": "C"}
    assert script_env({})["PATH"].startswith("/usr/local/sbin")


def test_interpreter_by_extension_and_shebang(tmp_path: Path) -> None:
    plain = tmp_path / "a.sh"
    plain.write_text("echo hi\n")
    bashy = tmp_path / "b.sh"
    bashy.write_text("#!/usr/bin/env bash\necho hi\n")
    assert choose_interpreter(script_kind("a.sh"), plain) == ["/bin/sh"]
    assert choose_interpreter(script_kind("b.sh"), bashy) == [shutil.which("bash")]
    assert choose_interpreter(script_kind("c.py"), plain) == [sys.executable]


def test_a_script_without_a_known_extension_is_refused() -> None:
    with pytest.raises(UnsupportedOnEndpointError, match="no interpreter for .exe"):
        script_kind("tool.exe")
    with pytest.raises(UnsupportedOnEndpointError, match="without an extension"):
        script_kind("tool")


@pytest.mark.skipif(bool(shutil.which("pwsh") or shutil.which("powershell")),
                    reason="this machine has PowerShell")
def test_powershell_without_powershell_says_so(tmp_path: Path) -> None:
    script = tmp_path / "x.ps1"
    script.write_text("Write-Output hi\n")
    with pytest.raises(UnsupportedOnEndpointError, match="no PowerShell on this endpoint"):
        choose_interpreter(script_kind("x.ps1"), script)


def test_a_daemon_a_finished_script_left_behind_is_stopped(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # It leaves the script's process group and holds no pipe of ours: only watching finds it.
    argv = _sh(tmp_path, f"setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! > {pids}\n"
                         "sleep 1\n")
    outcome = run_bounded(argv, cwd=tmp_path, env=script_env(os.environ), timeout_s=10,
                          keep_bytes=1000)
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert _gone(int(pids.read_text()))
