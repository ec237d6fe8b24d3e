"""Time limits and the signed cancel for commands run in threads (the agent's default pool).

Celery enforces soft and hard time limits only in its prefork pool (celery#9203) and cannot
terminate a thread, so the agent's watchdog does both for the threads pool:
- at the soft limit it raises `SoftTimeLimitExceeded` in the command's thread (as prefork's
  signal does) and stops the processes the command started (`command_processes.py`);
- a signed cancel raises `CommandCancelled` there and stops those processes the same way;
- at the hard limit (soft limit + grace) a command still running is recorded as timed out by
  `on_hard_limit` and its thread is abandoned, with an error in the log.

An exception raised in another thread (`PyThreadState_SetAsyncExc`) arrives only when that
thread next runs Python code. A thread blocked inside a C call (a read that never returns
from a hung network file system, a stuck device) does not see it until the call returns. Its
processes are stopped, which ends a wait on their output; past the hard limit the command's
outcome is recorded as timed out, and the thread is left to finish the call on its own: it
then unwinds at once (the exception is still pending) and its late outcome is dropped. Until
then it holds one of the pool's threads. Where a command must be killed however it is stuck,
run the agent with the prefork pool (`LR_AGENT_POOL=prefork`).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from worker_agent.command_processes import stop_processes_of

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long an early cancel (one for a command not yet started here) is kept for it.
EARLY_CANCEL_KEEP_S = 600.0


class CommandCancelled(BaseException):  # noqa: N818 - not an error: unwinds a cancelled command
    """Raised in a command's thread when the orchestrator's signed cancel arrives.

    A BaseException, like KeyboardInterrupt: a handler's `except Exception` cannot swallow it.
    """


class CommandAbandoned(Exception):  # noqa: N818 - reports a fact to the caller of `run`
    """Raised by `Watchdog.run` when the command returned after its hard time limit, whose
    outcome the watchdog already recorded: the late one must be dropped."""


@dataclass(eq=False)
class _Watched:
    command_id: str
    thread_id: int
    soft_at: float
    hard_at: float
    on_hard_limit: Callable[[], None]
    #: An exception was raised in the thread: never a second one (it may be unwinding).
    raised: bool = False
    #: The thread left `run` or was abandoned: nothing is raised in it any more.
    closed: bool = False
    abandoned: bool = False


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Have `exc` raised in thread `thread_id` when it next runs Python code; None clears an
    exception still pending there."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc else None)


class Watchdog:
    """One daemon thread that watches every command running in the agent's threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running: dict[str, _Watched] = {}
        #: Command ids cancelled before they started here → when the cancel came.
        self._early_cancels: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    def run(self, command_id: str, limit_s: float, grace_s: float, fn: Callable[[], T],
            on_hard_limit: Callable[[], None]) -> T:
        """Run `fn()` in this thread as command `command_id`: told to stop (SoftTimeLimit-
        Exceeded) after `limit_s`, abandoned after `limit_s + grace_s` (`on_hard_limit`
        records the outcome, in the watchdog's thread). CommandCancelled when cancelled;
        CommandAbandoned when `fn` ended after its hard limit."""
        now = self._clock()
        watched = _Watched(command_id, threading.get_ident(), now + limit_s,
                           now + limit_s + grace_s, on_hard_limit)
        try:
            self._enter(watched)
            return fn()
        finally:
            # An exception sent just as the command ended may arrive anywhere up to the close:
            # it is caught here, in this frame, until the close has cleared what is pending.
            while not watched.closed:
                try:
                    self._close(watched)
                except (SoftTimeLimitExceeded, CommandCancelled):
                    pass
            if watched.abandoned:
                raise CommandAbandoned(command_id)

    def cancel(self, command_id: str) -> bool:
        """Stop command `command_id`: True if it runs here now. One not started yet is
        cancelled as it starts (within EARLY_CANCEL_KEEP_S)."""
        with self._lock:
            watched = self._running.get(command_id)
            if watched is None:
                now = self._clock()
                self._early_cancels = {k: t for k, t in self._early_cancels.items()
                                       if now - t < EARLY_CANCEL_KEEP_S}
                self._early_cancels[command_id] = now
                return False
            if not watched.raised:
                watched.raised = True
                _raise_in(watched.thread_id, CommandCancelled)
        stop_processes_of(watched.thread_id)
        return True

    def running(self) -> list[str]:
        """The command ids running in threads now."""
        with self._lock:
            return list(self._running)

    def _enter(self, watched: _Watched) -> None:
        with self._lock:
            if self._early_cancels.pop(watched.command_id, None) is not None:
                raise CommandCancelled()
            self._running[watched.command_id] = watched
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="lr-watchdog",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def _close(self, watched: _Watched) -> None:
        with self._lock:
            if not watched.closed:
                _raise_in(watched.thread_id, None)
                if self._running.get(watched.command_id) is watched:
                    del self._running[watched.command_id]
                watched.closed = True

    def _loop(self) -> None:
        while True:
            soft, hard = self._due()
            for watched in soft:
                log.warning("%s ran past its time limit: told to stop", watched.command_id)
                stop_processes_of(watched.thread_id)
            for watched in hard:
                log.error("%s did not stop within its hard time limit: recorded as timed out; "
                          "its thread %s is abandoned", watched.command_id, watched.thread_id)
                stop_processes_of(watched.thread_id)
                # Recording waits out a Redis restart: in a thread of its own, so the limits
                # of the other commands are kept meanwhile.
                threading.Thread(target=self._record_timeout, args=(watched,),
                                 name="lr-watchdog-record", daemon=True).start()

    @staticmethod
    def _record_timeout(watched: _Watched) -> None:
        try:
            watched.on_hard_limit()
        except Exception:
            log.exception("could not record the timeout of %s", watched.command_id)

    def _due(self) -> tuple[list[_Watched], list[_Watched]]:
        """Wait until a limit passes; the commands past their soft limit (an exception raised
        in each) and those past their hard limit (closed and abandoned)."""
        with self._lock:
            while True:
                now = self._clock()
                soft = [w for w in self._running.values() if not w.raised and now >= w.soft_at]
                for watched in soft:
                    watched.raised = True
                    _raise_in(watched.thread_id, SoftTimeLimitExceeded)
                hard = [w for w in self._running.values() if now >= w.hard_at]
                for watched in hard:
                    del self._running[watched.command_id]
                    watched.closed = watched.abandoned = True
                if soft or hard:
                    return soft, hard
                next_at = min((w.soft_at if not w.raised else w.hard_at
                               for w in self._running.values()), default=None)
                self._wake.wait(None if next_at is None else max(next_at - now, 0.001))
