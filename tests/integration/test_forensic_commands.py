"""Forensic commands through API → pipeline → real agent, checked against independent tools."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.stack import Stack, completed


def test_getfilehash_equals_sha256sum_and_md5sum(stack: Stack, session_a: str,
                                                 tmp_path: Path) -> None:
    subject = tmp_path / "invoice2025.exe"
    subject.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    sha256 = subprocess.run(["sha256sum", str(subject)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    md5 = subprocess.run(["md5sum", str(subject)], capture_output=True, text=True,
                         check=True).stdout.split()[0]
    result = completed(stack.run(session_a, f"getfilehash {subject} --algo all"))
    assert result["sha256"] == sha256
    assert result["md5"] == md5
    assert result["size_bytes"] == subject.stat().st_size


def test_dir_lists_exactly_the_test_tree(stack: Stack, session_a: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    result = completed(stack.run(session_a, f"dir {tmp_path}"))
    names = {e["name"]: e for e in result["entries"]}
    assert set(names) == set(os.listdir(tmp_path))
    assert names["sub"]["type"] == "dir"
    assert names["link"]["type"] == "symlink"
    assert names["link"]["link_target"] == str(tmp_path / "a.txt")


def test_cd_makes_relative_paths_resolve_in_the_session(stack: Stack, session_a: str,
                                                        tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("x")
    assert completed(stack.run(session_a, f"cd {tmp_path}"))["cwd"] == str(tmp_path)
    result = completed(stack.run(session_a, "fileinfo note.txt"))
    assert result["path"] == str(tmp_path / "note.txt")


def test_processes_shows_a_sleep_the_test_started(stack: Stack, session_a: str) -> None:
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        result = completed(stack.run(session_a, f"processes --pid {sleeper.pid}"))
        (proc,) = result["processes"]
        assert proc["pid"] == sleeper.pid
        assert proc["ppid"] == os.getpid()
        assert proc["cmdline"] == ["sleep", "300"]
        listing = completed(stack.run(session_a, "processes"))
        assert sleeper.pid in {p["pid"] for p in listing["processes"]}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_netstat_shows_a_listening_socket_like_ss(stack: Stack, session_a: str) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        result = completed(stack.run(session_a, "netstat"))
        ours = [c for c in result["connections"]
                if c["local_port"] == port and c["proto"] == "tcp"]
        assert ours, f"port {port} missing from netstat"
        assert ours[0]["state"] == "LISTEN"
        assert ours[0]["pid"] == os.getpid()
        ss = subprocess.run(["ss", "-tanpH", "state", "listening", f"sport = :{port}"],
                            capture_output=True, text=True, check=True).stdout
        assert f"127.0.0.1:{port}" in ss
        assert f"pid={os.getpid()}" in ss


def test_kill_really_ends_the_process(stack: Stack, session_a: str) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        result = completed(stack.run(session_a, f"kill {victim.pid}"))
        assert result["ended"] is True
        assert victim.wait(timeout=10) is not None
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def test_kill_refuses_the_agent_itself(stack: Stack, session_a: str, device_a: str) -> None:
    agent_pid = stack.agents[device_a].pid
    body = stack.run(session_a, f"kill {agent_pid}")
    assert body["status"] == "failed"
    assert body["error"]["code"] == "protected_process"
    assert psutil.pid_exists(agent_pid)


def test_findfile_matches_find(stack: Stack, session_a: str, tmp_path: Path) -> None:
    for rel in ("x/invoice2025.exe", "y/z/invoice2025.exe", "y/other.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    found = subprocess.run(["find", str(tmp_path), "-name", "*.exe"], capture_output=True,
                           text=True, check=True).stdout.split()
    result = completed(stack.run(session_a, f"findfile '*.exe' --path {tmp_path}"))
    assert sorted(m["path"] for m in result["matches"]) == sorted(found)


def test_commands_for_device_a_never_reach_device_b(stack: Stack, device_a: str,
                                                     device_b: str) -> None:
    session = stack.open_session(device_a)
    ids = [_run_id(stack, session) for _ in range(5)]
    ledger_a, ledger_b = stack.ledger(device_a), stack.ledger(device_b)
    for command_id in ids:
        assert ledger_a.contains(command_id)
        assert not ledger_b.contains(command_id)
    time.sleep(0.2)
    log_b = Path(stack.agents[device_b].log_path or "").read_text()
    assert not any(command_id in log_b for command_id in ids)


def _run_id(stack: Stack, session: str) -> str:
    body = stack.run(session, "getfilehash /etc/hostname")
    assert body["status"] == "completed", body
    return str(body["command_id"])
