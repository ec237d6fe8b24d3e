"""Run a program with a time limit and bounded output capture: the collector under `runscript`.

It knows nothing of Celery or the library. The program runs in a process group of its own
(a new session on POSIX); when it ends, runs past its limit, or the agent is told to stop, the
whole group and every descendant still known are killed, so nothing it started outlives it.
On Linux it runs under `script_guard.py`, which ends the program's whole tree (double-forked
daemons too) when this process dies, even by SIGKILL.
Each stream keeps at most a fixed number of bytes and is read to its end: memory is constant.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from config.parent_death import die_with_parent, supported
from worker_agent.command_processes import stopped_with_command

#: Bytes read from a pipe at a time.
READ_BYTES = 64 * 1024
#: How often the program's descendants are looked up while it runs, so one that leaves its
#: process group (setsid, a daemon) is still known, and ended, when the run ends.
WATCH_INTERVAL_S = 0.2
#: How long the readers may take to see the end of their pipes once the group is killed
#: (a descendant that left the group may still hold them open).
DRAIN_TIMEOUT_S = 2.0
#: The guard every program runs under where the kernel can tie it to us (Linux).
GUARD = Path(__file__).with_name("script_guard.py")


@dataclass(frozen=True)
class Captured:
    """One output stream: the bytes kept, and how many were written in all."""

    kept: bytes
    total_bytes: int

    @property
    def truncated(self) -> bool:
        return self.total_bytes > len(self.kept)


@dataclass(frozen=True)
class RunOutcome:
    """What a bounded run produced."""

    #: None when the program was stopped at its time limit.
    exit_code: int | None
    timed_out: bool
    duration_s: float
    stdout: Captured
    stderr: Captured


class _Reader(threading.Thread):
    """Reads one pipe to its end, keeping the first `keep_bytes`."""

    def __init__(self, stream: IO[bytes], keep_bytes: int) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.fd = stream.fileno()
        self.keep_bytes = keep_bytes
        self.kept = bytearray()
        self.total = 0

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, READ_BYTES):
                room = self.keep_bytes - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]
                self.total += len(chunk)
        except OSError:
            pass  # what was read stands
        finally:
            # Closed here, never by the caller while a read may still be waiting on it (a
            # descendant that escaped may hold the pipe open): its number is never reused
            # under a blocked read.
            self.stream.close()

    def captured(self) -> Captured:
        return Captured(bytes(self.kept), self.total)


def run_bounded(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float,
                keep_bytes: int) -> RunOutcome:
    """Run `argv` (a list, never a shell string) and wait at most `timeout_s`."""
    started = time.monotonic()
    proc = subprocess.Popen(
        _guarded(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True, **_own_group())
    assert proc.stdout is not None and proc.stderr is not None
    readers = [_Reader(proc.stdout, keep_bytes), _Reader(proc.stderr, keep_bytes)]
    exit_code: int | None = None
    timed_out = False
    seen: dict[int, psutil.Process] = {}
    deadline = started + timeout_s
    try:
        for reader in readers:
            reader.start()
        # A cancel or the command's time limit stops the tree from the agent's watchdog too.
        with stopped_with_command(lambda: stop_tree(proc, list(seen.values()))):
            while exit_code is None:
                _remember_descendants(proc.pid, seen)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                try:
                    exit_code = proc.wait(timeout=min(WATCH_INTERVAL_S, remaining))
                except subprocess.TimeoutExpired:
                    pass
    finally:
        # Also when the agent's own time limit interrupts us: nothing outlives the run.
        stop_tree(proc, seen.values())
        for reader in readers:
            reader.join(DRAIN_TIMEOUT_S)
    return RunOutcome(exit_code=exit_code, timed_out=timed_out,
                      duration_s=round(time.monotonic() - started, 3),
                      stdout=readers[0].captured(), stderr=readers[1].captured())


def stop_tree(proc: subprocess.Popen[bytes], known: Iterable[psutil.Process] = ()) -> None:
    """Kill `proc`, its process group, its descendants now and those `known` from earlier
    (psutil refuses to signal a pid that was reused meanwhile); reap `proc`."""
    found: dict[int, psutil.Process] = {p.pid: p for p in known}
    _remember_descendants(proc.pid, found)
    descendants = list(found.values())
    if os.name == "posix":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already empty
    else:
        proc.kill()
    for child in descendants:
        try:
            child.kill()
        except psutil.Error:
            pass
    proc.wait()


def _remember_descendants(pid: int, seen: dict[int, psutil.Process]) -> None:
    try:
        for child in psutil.Process(pid).children(recursive=True):
            seen.setdefault(child.pid, child)
    except psutil.Error:
        pass  # it has ended: what was seen before stands


def _guarded(argv: Sequence[str]) -> list[str]:
    """`argv` under the guard (`script_guard.py`) where the kernel can tie it to us."""
    if not supported():
        return list(argv)
    # -I: the guard sees no PYTHON* variables, no user site, not its own directory.
    return [sys.executable, "-I", str(GUARD), *argv]


def _own_group() -> dict[str, Any]:
    if os.name == "posix" and supported():
        # The guard is told (SIGTERM) when the thread starting it ends: a pool process's main
        # thread (prefork), or one of the agent's pool threads, which live as long as the
        # agent (threads). It then ends the program's whole tree.
        return {"start_new_session": True, "preexec_fn": die_with_parent(signal.SIGTERM)}
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
