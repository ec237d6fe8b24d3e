"""Jobs from the CLI: `lr run --background`, `lr jobs`, `lr fg`, `lr cancel`, and in the shell."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli import Lr, ok

pytestmark = pytest.mark.integration


def _sha256sum(path: Path) -> str:
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[0]


def test_run_in_the_background_then_fg(lr: Lr, device_id: str, tmp_path: Path) -> None:
    subject = tmp_path / "a.bin"
    subject.write_bytes(b"\x00\x01" * 5000)
    session = json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"]
    started = ok(lr("run", "--background", session, f"getfilehash {subject}"))
    assert started.stdout.startswith("[1] getfilehash runs in the background")
    listed = ok(lr("jobs", session)).stdout
    assert listed.splitlines()[0].split()[:2] == ["JOB", "STATE"]
    done = json.loads(ok(lr("--json", "fg", session, "1")).stdout)
    assert done["status"] == "completed" and done["result"]["sha256"] == _sha256sum(subject)


def test_cancel_a_job_from_the_cli(lr: Lr, device_id: str, tmp_path: Path) -> None:
    huge = tmp_path / "huge.img"
    with open(huge, "wb") as f:
        f.truncate(64 * 1024**3)
    session = json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"]
    ok(lr("run", session, f"getfilehash {huge} &"))
    assert "cancelled" in ok(lr("cancel", session, "1")).stdout
    result = lr("fg", session, "1")
    assert result.exit_code == 9 and "cancelled" in result.stderr
    assert lr("cancel", session, "1").exit_code == 2


def test_the_shell_runs_jobs(lr: Lr, device_id: str, tmp_path: Path) -> None:
    subject = tmp_path / "b.bin"
    subject.write_bytes(b"shell job")
    script = f"getfilehash {subject} &\njobs\nfg 1\nfg\nexit\n"
    result = ok(lr("shell", device_id, input=script))
    assert "[1] getfilehash runs in the background" in result.stdout
    assert _sha256sum(subject) in result.stdout
    assert "fg: which job?" in result.stderr
