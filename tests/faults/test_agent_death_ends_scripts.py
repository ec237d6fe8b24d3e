"""A `runscript` does not outlive its agent: SIGKILL of the agent's process (threads pool, the
default), or of a prefork agent's main process or of the pool process running the script,
ends the script and everything it started, double-forked daemons in sessions of their own
included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from orchestrator.files.library import library_of
from tests.stack import Stack, new_device_id
from worker_agent.script_runner import GUARD

#: How long the script's tree has to be gone after the kill.
GONE_WITHIN_S = 5.0
#: How long the script has to start its children.
STARTED_WITHIN_S = 15.0


def _script(pids: Path, ready: Path) -> bytes:
    # A child in the script's group, and a grandchild whose parent exits at once (reparented)
    # in a session of its own (out of the script's process group).
    return (
        f"echo $$ >> {pids}\n"
        f"sleep 300 &\necho $! >> {pids}\n"
        f"( setsid sh -c 'sleep 301 & echo $! >> {pids}' & )\n"
        f"sleep 0.5\necho ready > {ready}\nwait\n"
    ).encode()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start_script(st: Stack, device: str, tmp_path: Path) -> list[int]:
    """Start the script in the background; the pids of the script and its descendants."""
    pids, ready = tmp_path / "pids", tmp_path / "ready"
    name = f"t-{uuid.uuid4().hex[:8]}.sh"
    library_of(st.plane).add(name, _script(pids, ready), "admin")
    session = st.open_session(device)
    with st.client() as http:
        resp = http.post(f"/sessions/{session}/commands",
                         json={"line": f"runscript {name}", "background": True})
        assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + STARTED_WITHIN_S
    while not ready.exists():
        assert time.monotonic() < deadline, "the script did not start"
        time.sleep(0.05)
    found = [int(p) for p in pids.read_text().split()]
    assert len(found) == 3 and all(_alive(p) for p in found), found
    return found


def _pool_process_of(script_pid: int, agent_pid: int) -> psutil.Process:
    """The agent's child the script runs under: a prefork pool process (the script's guard in
    the threads pool, whose commands run in the agent's own process)."""
    proc = psutil.Process(script_pid)
    while proc.ppid() != agent_pid:
        parent = proc.parent()
        assert parent is not None, "the script does not run under the agent"
        proc = parent
    return proc


@pytest.mark.parametrize(("agent_pool", "victim"), [
    ("threads", "agent main process"), ("prefork", "agent main process"),
    ("prefork", "pool process")])
def test_killing_the_agent_ends_the_script_and_all_it_started(
        stack_factory, tmp_path: Path, agent_pool: str,  # type: ignore[no-untyped-def]
        victim: str) -> None:
    device = new_device_id("orphan")
    tree: list[int] = []
    pool: psutil.Process | None = None
    with stack_factory([device], runscript_timeout_s=50.0, agent_pool=agent_pool) as st:
        agent_pid = st.agents[device].pid
        try:
            tree = _start_script(st, device, tmp_path)
            pool = _pool_process_of(tree[0], agent_pid)
            if agent_pool == "threads":
                assert pool.cmdline()[1:2] == ["-I"], "the script runs under its guard"
            os.kill(agent_pid if victim == "agent main process" else pool.pid, signal.SIGKILL)
            deadline = time.monotonic() + GONE_WITHIN_S
            while any(_alive(p) for p in tree) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = [p for p in tree if _alive(p)]
            assert not left, f"still running after the {victim} was killed: {left}"
            if victim == "agent main process":
                # A pool process is killed with the agent; a guard (threads pool) ends after
                # the tree it kills.
                while _alive(pool.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not _alive(pool.pid), "the pool process outlived the agent"
        finally:
            for pid in [*tree, *([pool.pid] if pool is not None else [])]:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_the_guard_ends_the_tree_when_stop_signals_arrive_in_a_burst(tmp_path: Path) -> None:
    """The parent-death signal comes again each time the guard is handed to the next thread
    of a dying multi-threaded agent: a burst of SIGTERMs microseconds apart must not cut the
    guard's clean-up short (a second stop inside it once left the whole tree running)."""
    pids, ready = tmp_path / "pids", tmp_path / "ready"
    script = tmp_path / "tree.sh"
    script.write_bytes(_script(pids, ready))
    for _ in range(10):
        pids.unlink(missing_ok=True)
        ready.unlink(missing_ok=True)
        guard = subprocess.Popen([sys.executable, "-I", str(GUARD), "/bin/sh", str(script)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            deadline = time.monotonic() + STARTED_WITHIN_S
            while not ready.exists():
                assert time.monotonic() < deadline, "the script did not start"
                time.sleep(0.02)
            tree = [int(p) for p in pids.read_text().split()]
            for _ in range(20):  # as threads exit one after another, about 20 µs apart
                os.kill(guard.pid, signal.SIGTERM)
                until = time.perf_counter() + 20e-6
                while time.perf_counter() < until:
                    pass
            guard.wait(timeout=GONE_WITHIN_S)
            deadline = time.monotonic() + GONE_WITHIN_S
            while any(_alive(p) for p in tree) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = [p for p in tree if _alive(p)]
            assert not left, f"still running after a burst of SIGTERMs to the guard: {left}"
        finally:
            started = [int(p) for p in pids.read_text().split()] if pids.exists() else []
            for pid in [*started, guard.pid]:
                try:
                    psutil.Process(pid).kill()
                except psutil.Error:
                    pass
            guard.wait()
