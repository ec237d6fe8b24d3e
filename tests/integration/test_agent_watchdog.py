"""The watchdog of an agent running commands in threads: real threads, real processes.

- Past its soft limit a command running Python code is told to stop (SoftTimeLimitExceeded in
  its own thread) and the processes it started are stopped.
- A thread blocked in a C call past its hard limit has its outcome recorded and is abandoned;
  when the call returns, its late result is refused (CommandAbandoned).
- A cancel stops the command's thread and its processes; a cancel that comes before the
  command starts stops it as it starts. Other threads are never touched.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from worker_agent.command_processes import stopped_with_command
from worker_agent.watchdog import CommandAbandoned, CommandCancelled, Watchdog


class _InThread(threading.Thread):
    """Runs `watchdog.run(...)` in a thread of its own; keeps what it returned or raised."""

    def __init__(self, watchdog: Watchdog, command_id: str, fn: Callable[[], Any], *,
                 limit_s: float = 30.0, grace_s: float = 30.0,
                 on_hard_limit: Callable[[], None] = lambda: None) -> None:
        super().__init__(daemon=True)
        self.args_ = (command_id, limit_s, grace_s, fn, on_hard_limit)
        self.watchdog = watchdog
        self.returned: Any = None
        self.raised: BaseException | None = None

    def run(self) -> None:
        try:
            self.returned = self.watchdog.run(*self.args_)
        except BaseException as exc:  # noqa: BLE001 - the test looks at what arrived
            self.raised = exc


def _busy_until_stopped(started: threading.Event) -> Callable[[], str]:
    def fn() -> str:
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sum(range(1000))  # Python code: an exception sent to the thread arrives here
        return "ran to its end"
    return fn


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "1000"])


def _gone(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> bool:
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_past_its_soft_limit_a_command_is_told_to_stop_and_its_processes_end() -> None:
    watchdog = Watchdog()
    proc = _sleeper()
    started = threading.Event()
    busy = _busy_until_stopped(started)

    def command() -> str:
        with stopped_with_command(proc.kill):
            return busy()

    began = time.monotonic()
    thread = _InThread(watchdog, "c-soft", command, limit_s=0.5)
    thread.start()
    thread.join(20)
    assert isinstance(thread.raised, SoftTimeLimitExceeded), thread.raised
    assert 0.4 < time.monotonic() - began < 10
    assert _gone(proc)
    assert watchdog.running() == []


def test_a_thread_blocked_in_a_c_call_is_recorded_at_its_hard_limit_and_abandoned() -> None:
    watchdog = Watchdog()
    read_end, write_end = os.pipe()
    recorded = threading.Event()
    began = time.monotonic()
    thread = _InThread(watchdog, "c-stuck", lambda: os.read(read_end, 1), limit_s=0.3,
                       grace_s=0.5, on_hard_limit=recorded.set)
    thread.start()
    assert recorded.wait(20)
    assert 0.7 < time.monotonic() - began < 15
    assert thread.is_alive()  # still inside read(): no thread can be killed
    assert watchdog.running() == []

    os.write(write_end, b"x")  # the call returns: the late result is refused
    thread.join(20)
    assert isinstance(thread.raised, CommandAbandoned), thread.raised
    os.close(read_end)
    os.close(write_end)


def test_a_cancel_stops_the_commands_thread_and_processes_and_no_other() -> None:
    watchdog = Watchdog()
    proc = _sleeper()
    started, other_started = threading.Event(), threading.Event()
    busy = _busy_until_stopped(started)

    def command() -> str:
        with stopped_with_command(proc.kill):
            return busy()

    target = _InThread(watchdog, "c-target", command)
    other = _InThread(watchdog, "c-other", lambda: (other_started.set(), time.sleep(1.5))[1])
    target.start()
    other.start()
    assert started.wait(10) and other_started.wait(10)
    assert sorted(watchdog.running()) == ["c-other", "c-target"]

    assert watchdog.cancel("c-target") is True
    target.join(20)
    assert isinstance(target.raised, CommandCancelled), target.raised
    assert _gone(proc)
    other.join(20)
    assert other.raised is None  # the other command ran to its end untouched

    # A cancel before the command starts here stops it as it starts; the id is then spent.
    assert watchdog.cancel("c-early") is False
    ran: list[str] = []
    early = _InThread(watchdog, "c-early", lambda: ran.append("ran"))
    early.start()
    early.join(10)
    assert isinstance(early.raised, CommandCancelled) and ran == []
    again = _InThread(watchdog, "c-early", lambda: "ran")
    again.start()
    again.join(10)
    assert again.raised is None and again.returned == "ran"


@pytest.mark.parametrize("run_s", [0.05, 0.2])
def test_no_exception_reaches_a_thread_after_its_command_ended(run_s: float) -> None:
    # Commands ending right at their limit, many times: whatever was sent is caught in `run`
    # or cleared there; the thread goes on with nothing pending.
    watchdog = Watchdog()
    for i in range(10):
        thread = _InThread(watchdog, f"c-edge-{i}", lambda: time.sleep(run_s), limit_s=run_s)
        after: list[str] = []
        original_run = thread.run

        def run_then_more(original: Callable[[], None] = original_run,
                          after: list[str] = after) -> None:
            original()
            deadline = time.monotonic() + 0.15
            while time.monotonic() < deadline:
                sum(range(100))
            after.append("clean")

        thread.run = run_then_more  # type: ignore[method-assign]
        thread.start()
        thread.join(10)
        assert after == ["clean"]
        assert thread.raised is None or isinstance(thread.raised, SoftTimeLimitExceeded)
    assert psutil.Process().num_threads() < 20
