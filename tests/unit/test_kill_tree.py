"""kill --tree on real process trees the test builds, checked with psutil."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from tasks.commands.processes import KillArgs
from tasks.errors import ProtectedProcessError
from worker_agent.context import CommandContext
from worker_agent.processes import run_kill

#: A shell with a sleeping child and a sub-shell that has a sleeping child of its own.
TREE = "sleep 300 & sh -c 'sleep 300 & wait' & wait"
#: A parent that starts its `sleep` again whenever it ends (a watchdog).
RESPAWNER = "while true; do sleep 31337; done"


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie waiting for its (new) parent to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for_tree(root: subprocess.Popen[bytes], size: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = psutil.Process(root.pid).children(recursive=True)
        if len(found) >= size:
            return found
        time.sleep(0.02)
    raise AssertionError(f"the test tree never reached {size} descendants")


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    root = subprocess.Popen(["sh", "-c", TREE])
    members: list[psutil.Process] = []
    try:
        members = wait_for_tree(root, 3)
        yield root
    finally:
        for proc in members:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        root.kill()
        root.wait(timeout=10)


def test_kill_tree_ends_every_process_children_first(tree: subprocess.Popen[bytes]) -> None:
    members = psutil.Process(tree.pid).children(recursive=True)
    depth = {p.pid: (2 if p.ppid() != tree.pid else 1) for p in members}
    result = run_kill(KillArgs(pid=tree.pid, tree=True), CommandContext(device_id="d"))
    order = [k.pid for k in result.killed]
    assert sorted(order) == sorted([tree.pid, *depth])
    assert order[-1] == tree.pid and result.pid == tree.pid and result.ended
    assert order[0] in [pid for pid, d in depth.items() if d == 2]
    assert [k.depth for k in result.killed] == sorted((k.depth for k in result.killed),
                                                      reverse=True)
    assert all(k.ended and k.signal == "SIGTERM" for k in result.killed)
    assert tree.wait(timeout=10) is not None
    assert all(gone(pid) for pid in order)


def test_a_respawning_parent_gets_no_chance_to_respawn() -> None:
    root = subprocess.Popen(["sh", "-c", RESPAWNER])
    try:
        wait_for_tree(root, 1)
        result = run_kill(KillArgs(pid=root.pid, tree=True), CommandContext(device_id="d"))
        assert [k.name for k in result.killed] == ["sleep", "sh"]
        root.wait(timeout=10)
        time.sleep(0.2)
        left = [p for p in psutil.process_iter(["cmdline", "status"])
                if p.info["cmdline"] == ["sleep", "31337"]
                and p.info["status"] != psutil.STATUS_ZOMBIE]
        assert left == []
    finally:
        if root.poll() is None:
            root.kill()
            root.wait()


def test_a_protected_descendant_refuses_the_whole_tree(tree: subprocess.Popen[bytes]) -> None:
    members = psutil.Process(tree.pid).children(recursive=True)
    ctx = CommandContext(device_id="d", protected_pids=frozenset({members[-1].pid}))
    with pytest.raises(ProtectedProcessError, match=str(members[-1].pid)):
        run_kill(KillArgs(pid=tree.pid, tree=True), ctx)
    for proc in [psutil.Process(tree.pid), *members]:
        assert proc.is_running()
        assert proc.status() != psutil.STATUS_STOPPED


def test_without_tree_only_the_process_ends(tree: subprocess.Popen[bytes]) -> None:
    members = psutil.Process(tree.pid).children(recursive=True)
    result = run_kill(KillArgs(pid=tree.pid), CommandContext(device_id="d"))
    assert [k.pid for k in result.killed] == [tree.pid]
    assert tree.wait(timeout=10) is not None
    assert all(p.is_running() for p in members)
