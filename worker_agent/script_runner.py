"""Run a program with a time limit and bounded output capture: the collector under `runscript`.

It knows nothing of Celery or the library. The program runs in a process group of its own
(a new session on POSIX); when it ends, runs past its limit, or the agent is told to stop, the
whole group and every descendant still known are killed, so nothing it started outlives it.
Each stream keeps at most a fixed number of bytes and is read to its end: memory is constant.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

#: Bytes read from a pipe at a time.
READ_BYTES = 64 * 1024
#: How long the readers may take to see the end of their pipes once the group is killed
#: (a descendant that left the group may still hold them open).
DRAIN_TIMEOUT_S = 2.0


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
            pass  # the pipe was closed under us: what was read stands

    def captured(self) -> Captured:
        return Captured(bytes(self.kept), self.total)


def run_bounded(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float,
                keep_bytes: int) -> RunOutcome:
    """Run `argv` (a list, never a shell string) and wait at most `timeout_s`."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True, **_own_group())
    assert proc.stdout is not None and proc.stderr is not None
    readers = [_Reader(proc.stdout, keep_bytes), _Reader(proc.stderr, keep_bytes)]
    exit_code: int | None = None
    timed_out = False
    try:
        for reader in readers:
            reader.start()
        try:
            exit_code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
    finally:
        # Also when the agent's own time limit interrupts us: the group never outlives the run.
        stop_tree(proc)
        for reader in readers:
            reader.join(DRAIN_TIMEOUT_S)
        proc.stdout.close()
        proc.stderr.close()
    return RunOutcome(exit_code=exit_code, timed_out=timed_out,
                      duration_s=round(time.monotonic() - started, 3),
                      stdout=readers[0].captured(), stderr=readers[1].captured())


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill `proc`, its process group and every descendant still known; reap `proc`."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
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


def _own_group() -> dict[str, Any]:
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
