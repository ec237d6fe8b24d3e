"""The process handlers on real child processes, checked against ps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tasks.commands.processes import KillArgs, ProcessesArgs
from tasks.errors import ProcessNotFoundError, ProtectedProcessError
from worker_agent.context import CommandContext
from worker_agent.processes import (
    ListingTally,
    collect_processes,
    read_process,
    run_kill,
    run_processes,
)

# A child that ignores SIGTERM, so only SIGKILL ends it; it says when the handler is set.
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)


@pytest.fixture
def ctx() -> CommandContext:
    return CommandContext(device_id="test-device")


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """End a child we started, whatever state the test left it in."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        stop(proc)


def dead_pid() -> int:
    """A pid that surely names no process: one of our children, started and reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=5)
    assert not psutil.pid_exists(proc.pid)
    return proc.pid


def test_processes_lists_our_child_with_parent_and_cmdline(
    sleeper: subprocess.Popen[bytes], ctx: CommandContext
) -> None:
    result = run_processes(ProcessesArgs(), ctx)
    by_pid = {p.pid: p for p in result.processes}
    child = by_pid[sleeper.pid]
    assert child.ppid == os.getpid()
    assert child.cmdline == ["sleep", "300"]
    assert child.name == "sleep"
    assert child.exe is not None and os.path.basename(child.exe) == "sleep"
    assert child.user == psutil.Process().username()
    assert child.status in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    assert child.rss_bytes and child.rss_bytes > 0
    assert child.open_files == 0 and child.connections == 0
    assert child.started_at == pytest.approx(psutil.Process(sleeper.pid).create_time())
    assert child.denied == [] and child.depth == 0
    assert [p.pid for p in result.processes] == sorted(by_pid)


def test_processes_pid_set_matches_ps(
    sleeper: subprocess.Popen[bytes], ctx: CommandContext
) -> None:
    def ps_pids() -> set[int]:
        ps = subprocess.run(["ps", "-eo", "pid="], capture_output=True, text=True, check=True)
        return {int(word) for word in ps.stdout.split()}

    before = ps_pids()
    ours = {p.pid for p in run_processes(ProcessesArgs(), ctx).processes}
    after = ps_pids()
    assert {os.getpid(), sleeper.pid} <= ours & before & after
    # Other processes come and go around the listing (tests in parallel start agents): every
    # process ps saw both before and after it must be in it.
    stable = before & after
    assert stable <= ours, sorted(stable - ours)


def test_processes_with_pid_lists_only_that_process(
    sleeper: subprocess.Popen[bytes], ctx: CommandContext
) -> None:
    result = run_processes(ProcessesArgs(pid=sleeper.pid), ctx)
    assert [p.pid for p in result.processes] == [sleeper.pid]
    assert result.processes[0].cmdline == ["sleep", "300"]


def test_processes_with_unknown_pid_is_process_not_found(ctx: CommandContext) -> None:
    pid = dead_pid()
    with pytest.raises(ProcessNotFoundError, match=str(pid)):
        run_processes(ProcessesArgs(pid=pid), ctx)


def test_processes_tree_puts_child_right_under_parent_one_deeper(
    sleeper: subprocess.Popen[bytes], ctx: CommandContext
) -> None:
    second = subprocess.Popen(["sleep", "301"])
    try:
        procs = run_processes(ProcessesArgs(tree=True), ctx).processes
        pids = [p.pid for p in procs]
        me = pids.index(os.getpid())
        depth = procs[me].depth
        # Our children follow us directly, in pid order, one level deeper.
        our_children = sorted(c.pid for c in psutil.Process().children())
        assert pids[me + 1 : me + 1 + len(our_children)] == our_children
        assert {sleeper.pid, second.pid} <= set(our_children)
        assert procs[pids.index(sleeper.pid)].depth == depth + 1
        assert sorted(pids) == sorted(set(pids)), "every process appears once"
        for index, proc in enumerate(procs):
            if proc.depth == 0:
                assert proc.ppid not in set(pids) or proc.ppid == proc.pid
            else:  # the nearest shallower entry above is the parent
                parent = next(p for p in reversed(procs[:index]) if p.depth < proc.depth)
                assert (parent.pid, parent.depth) == (proc.ppid, proc.depth - 1)
    finally:
        stop(second)


def test_process_that_ended_after_listing_raises_no_such_process() -> None:
    proc = subprocess.Popen(["sleep", "300"])
    handle = psutil.Process(proc.pid)
    stop(proc)
    # collect_processes counts exactly this as vanished instead of failing the listing.
    with pytest.raises(psutil.NoSuchProcess):
        read_process(handle)


def test_zombie_is_listed_with_empty_fields_not_denied_or_vanished(ctx: CommandContext) -> None:
    zombie = subprocess.Popen(["sleep", "300"])
    try:
        os.kill(zombie.pid, signal.SIGKILL)
        handle = psutil.Process(zombie.pid)
        while handle.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        tally = ListingTally()
        procs = {p.pid: p for p in collect_processes(ProcessesArgs(), tally)}
        info = procs[zombie.pid]
        assert (info.status, info.ppid, info.denied) == (psutil.STATUS_ZOMBIE, os.getpid(), [])
        assert info.cmdline == [] and info.exe is None
    finally:
        stop(zombie)


def test_kill_ends_the_process_with_sigterm(
    sleeper: subprocess.Popen[bytes], ctx: CommandContext
) -> None:
    result = run_kill(KillArgs(pid=sleeper.pid), ctx)
    assert (result.pid, result.name, result.signal, result.ended) == (
        sleeper.pid,
        "sleep",
        "SIGTERM",
        True,
    )
    assert sleeper.wait(timeout=5) == -15
    assert not psutil.pid_exists(sleeper.pid)


def test_kill_escalates_to_sigkill_when_sigterm_is_ignored(ctx: CommandContext) -> None:
    stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
        result = run_kill(KillArgs(pid=stubborn.pid), ctx, grace_s=0.3)
        assert (result.signal, result.ended) == ("SIGKILL", True)
        assert stubborn.wait(timeout=5) == -9
    finally:
        stop(stubborn)
        if stubborn.stdout is not None:
            stubborn.stdout.close()


def test_kill_refuses_pid_one(ctx: CommandContext) -> None:
    with pytest.raises(ProtectedProcessError, match="pid 1"):
        run_kill(KillArgs(pid=1), ctx)


def test_kill_refuses_protected_pids_and_leaves_them_running(
    sleeper: subprocess.Popen[bytes],
) -> None:
    ctx = CommandContext(device_id="test-device", protected_pids=frozenset({sleeper.pid}))
    with pytest.raises(ProtectedProcessError, match=f"pid {sleeper.pid}.*agent"):
        run_kill(KillArgs(pid=sleeper.pid), ctx)
    assert sleeper.poll() is None


def test_kill_refuses_the_agent_itself_even_unlisted(ctx: CommandContext) -> None:
    with pytest.raises(ProtectedProcessError):
        run_kill(KillArgs(pid=os.getpid()), ctx)


def test_kill_of_dead_pid_is_process_not_found(ctx: CommandContext) -> None:
    pid = dead_pid()
    with pytest.raises(ProcessNotFoundError, match=str(pid)):
        run_kill(KillArgs(pid=pid), ctx)


def test_processes_open_lists_only_the_holders_of_that_file(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], ctx: CommandContext
) -> None:
    held = tmp_path / "held.bin"
    held.write_bytes(b"x")
    with held.open("rb") as fd:
        holder = subprocess.Popen(["sleep", "300"], stdin=fd)
    try:
        link = tmp_path / "link.bin"
        link.symlink_to(held)  # named through a link, the file is the same
        pids = {p.pid for p in run_processes(ProcessesArgs(open_path=str(link)), ctx).processes}
        assert pids == {holder.pid}
        assert run_processes(ProcessesArgs(open_path=str(tmp_path / "none")), ctx).processes == []
    finally:
        stop(holder)
