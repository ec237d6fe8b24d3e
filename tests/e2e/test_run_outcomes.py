"""What `lr run` says and exits with: a script that failed (exit 18, its code in the result),
and `processes --pid N` listing the open files and sockets themselves (checked against
/proc/N/fd and `ss -p`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cli import Lr, ok
from tests.stack import Stack, new_device_id, own_prefix_stack

pytestmark = pytest.mark.integration

#: Seconds a script may run on this module's agent.
SCRIPT_LIMIT_S = 2


@pytest.fixture(scope="module")
def device_id() -> str:
    return new_device_id("cli")


@pytest.fixture(scope="module")
def stack(redis_url: str, device_id: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    with own_prefix_stack(redis_url, [device_id], tmp_path_factory.mktemp("stack"),
                          runscript_timeout_s=SCRIPT_LIMIT_S) as st:
        yield st


def _session(lr: Lr, device_id: str) -> str:
    return str(json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"])


def test_a_script_that_exits_non_zero_or_overruns_ends_lr_run_with_18(
        lr: Lr, device_id: str, tmp_path: Path) -> None:
    scripts = {"fails.sh": "echo checked\nexit 3\n", "overruns.sh": "echo started\nsleep 30\n",
               "passes.sh": "echo fine\n"}
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
        ok(lr("library", "add", str(tmp_path / name), "--replace"))
    session = _session(lr, device_id)

    failed = lr("run", session, "runscript fails.sh")
    assert failed.exit_code == 18, failed.output
    assert "checked" in failed.stdout and "fails.sh: exit code 3" in failed.stdout
    assert failed.stderr.strip() == ("lr: script fails.sh exited with code 3 (its output is "
                                     "in the result)")
    as_json = lr("--json", "run", session, "runscript fails.sh")
    assert as_json.exit_code == 18
    record = json.loads(as_json.stdout)
    assert record["status"] == "completed" and record["result"]["exit_code"] == 3

    stopped = lr("run", session, "runscript overruns.sh")
    assert stopped.exit_code == 18, stopped.output
    assert "started" in stopped.stdout
    assert f"was stopped after {SCRIPT_LIMIT_S} s, its time limit" in stopped.stderr

    assert ok(lr("run", session, "runscript passes.sh")).stderr == ""


def _proc_fd_files(pid: int) -> dict[int, str]:
    """Regular files among /proc/PID/fd, read from the kernel directly."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("/") and os.path.isfile(target):
            found[int(fd)] = target
    return found


def _ss_ports(pid: int) -> set[tuple[str, int]]:
    """(tcp|udp, local port) of the process's sockets, as `ss -p` reports them."""
    ports = set()
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        out = subprocess.run(["ss", "-Hanp", flag], capture_output=True, text=True,
                             check=True).stdout
        for line in out.splitlines():
            if f"pid={pid}," in line:
                local = line.split()[3]
                ports.add((proto, int(local.rsplit(":", 1)[1])))
    return ports


def test_processes_pid_lists_the_open_files_and_sockets(
        lr: Lr, device_id: str, tmp_path: Path) -> None:
    holder = (
        "import socket, sys, time\n"
        "f1 = open(sys.argv[1], 'w'); f2 = open(sys.argv[2])\n"
        "t = socket.socket(); t.bind(('127.0.0.1', 0)); t.listen()\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n"
        "print('ready', flush=True); time.sleep(60)\n")
    written, read = tmp_path / "written.log", tmp_path / "read.cfg"
    read.write_text("x")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(written), str(read)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        session = _session(lr, device_id)
        record = json.loads(ok(lr("--json", "run", session,
                                  f"processes --pid {proc.pid}")).stdout)
        (info,) = record["result"]["processes"]
        assert {f["fd"]: f["path"] for f in info["files"]} == _proc_fd_files(proc.pid)
        assert {(s["proto"], s["local_port"]) for s in info["sockets"]} == _ss_ports(proc.pid)
        assert len(info["sockets"]) == info["connections"] == 2

        shown = ok(lr("run", session, f"processes --pid {proc.pid}")).stdout
        assert f"open files of {proc.pid} (" in shown
        assert str(written) in shown and str(read) in shown
        assert f"sockets of {proc.pid} (2):" in shown
        for proto, port in _ss_ports(proc.pid):
            assert re.search(rf"^{proto}\s+127\.0\.0\.1:{port}\s", shown, re.M), shown
    finally:
        proc.kill()
        proc.wait()
