"""remediate, undo, kill --tree, services and persistence as `lr run` prints them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.cli.render import render_record
from tests.e2e.cli import Lr, ok

pytestmark = pytest.mark.integration


def _open(lr: Lr, device_id: str) -> str:
    return str(json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"])


def test_remediate_prints_the_qid_and_undo_puts_the_file_back(lr: Lr, device_id: str,
                                                              tmp_path: Path) -> None:
    suspect = tmp_path / "payload.elf"
    suspect.write_bytes(b"\x7fELF" + os.urandom(4096))
    digest = subprocess.run(["sha256sum", str(suspect)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    session = _open(lr, device_id)
    out = ok(lr("run", session, f"remediate {suspect}")).stdout
    match = re.search(r"^quarantined file (\S+) as (Q[0-9a-f]{12}) \(4100 bytes, rename\)$",
                      out, re.M)
    assert match and match.group(1) == str(suspect), out
    qid = match.group(2)
    assert f"sha256  {digest}" in out and f"undo with: undo {qid}" in out
    assert not suspect.exists()
    out = ok(lr("run", session, f"undo {qid}")).stdout
    assert out.splitlines()[0] == f"restored {qid} to {suspect} (1 entries, sha256 verified)"
    assert suspect.read_bytes()[:4] == b"\x7fELF"


def test_kill_tree_prints_every_pid_children_first(lr: Lr, device_id: str) -> None:
    root = subprocess.Popen(["sh", "-c", "sh -c 'sleep 300 & wait' & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(root.pid).children(recursive=True)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        session = _open(lr, device_id)
        lines = ok(lr("run", session, f"kill {root.pid} --tree")).stdout.splitlines()
        assert len(lines) == 3
        assert lines[0].startswith("    pid ") and "(sleep) ended after SIGTERM" in lines[0]
        assert lines[-1] == f"pid {root.pid} (sh) ended after SIGTERM"
        root.wait(timeout=10)
    finally:
        if root.poll() is None:
            root.kill()
            root.wait()


def test_services_says_when_systemd_is_not_running(lr: Lr, device_id: str) -> None:
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here")
    if not os.path.isdir("/lib/systemd/system"):
        pytest.skip("no unit files on this machine")
    session = _open(lr, device_id)
    lines = ok(lr("run", session, "services")).stdout.splitlines()
    assert lines[0].startswith("(systemd is not running on this endpoint")
    assert lines[1].split() == ["UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"]


def test_persistence_renders_kind_path_owner_and_detail() -> None:
    record = {"command": "persistence", "status": "completed", "result": {
        "root": "/", "unreadable": 1, "items": [
            {"kind": "cron", "path": "/etc/cron.d/evil", "type": "file", "owner": "root",
             "mtime": 0.0, "sha256": "ab" * 32, "detail": {"lines": ["* * * * * root /x"]}},
            {"kind": "systemd", "path": "/etc/systemd/system/a.service", "type": "file",
             "owner": "root", "mtime": 0.0, "sha256": "cd" * 32,
             "detail": {"state": "enabled", "enabled": True, "exec_start": ["/opt/a"]}}]}}
    lines = render_record(record).splitlines()
    assert lines[0].split() == ["KIND", "PATH", "OWNER", "MTIME", "SHA256", "DETAIL"]
    assert "/etc/cron.d/evil" in lines[1] and "lines=* * * * * root /x" in lines[1]
    assert "abababababababab" in lines[1] and "ab" * 9 not in lines[1]
    assert "state=enabled enabled=True exec_start=/opt/a" in lines[2]
    assert lines[-1] == "(1 places could not be read)"
