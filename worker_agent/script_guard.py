"""The guard between the agent and a `runscript` program: nothing the program starts outlives
the agent, however the agent dies.

Run as a file (`python -I script_guard.py PROGRAM [ARGS...]`, standard library and psutil
only: the script's clean environment has no PYTHONPATH). It is a child subreaper (Linux), so
every orphan of the program's tree, double-forked daemons included, is reparented to it and
stays findable; the kernel sends it SIGTERM when the agent thread that started it ends: the
agent's process dies, or the prefork pool process running the command (`PR_SET_PDEATHSIG`,
armed before exec; it comes once more for each thread of a dying agent the guard is handed to).
When the program ends, or the first such signal or SIGINT arrives, it kills every descendant
it has and reaps them, then exits as the program did (the same code, or the same signal).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys

import psutil

#: prctl option (linux/prctl.h).
PR_SET_CHILD_SUBREAPER = 36
#: Rounds of "kill every descendant" (one may fork while the previous round runs).
KILL_ROUNDS = 20
#: What the guard exits with when it cannot start the program (as a shell does).
CANNOT_START = 127


class _Stop(BaseException):  # noqa: N818 - not an error: unwinds the wait on a stop signal
    """Raised by the stop signals' handler so the wait for the program ends."""


#: Whether a stop signal arrived: the clean-up it starts must not be cut short by the next one.
_stopping = False


def _on_stop(_signum: int, _frame: object) -> None:
    # Raised once only. The kernel may send several: the parent-death signal comes again each
    # time the guard is handed to the next thread of a dying multi-threaded agent, and a
    # second _Stop raised inside the clean-up would abandon it with the program still running.
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise _Stop


def _become_subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0)


def _kill_descendants() -> None:
    """SIGKILL everything below us until nothing is left, reaping as we go."""
    me = psutil.Process()
    for _ in range(KILL_ROUNDS):
        children = me.children(recursive=True)
        if not children:
            break
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(children, timeout=1)
    _reap_all()


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wait_for(pid: int) -> int:
    """The wait status of `pid`, reaping any orphan handed to us meanwhile."""
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            return status


def main(argv: list[str]) -> int:
    """Run `argv` to its end (or to a stop signal), then end everything it started."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_stop)
    _become_subreaper()
    status: int | None = None
    try:
        try:
            proc = subprocess.Popen(argv, close_fds=True)
        except OSError as exc:
            print(f"cannot start {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
            return CANNOT_START
        status = _wait_for(proc.pid)
        proc.returncode = 0  # reaped above: the object must not wait again
    except _Stop:
        status = None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        _kill_descendants()
    if status is None:
        return 128 + signal.SIGTERM
    if os.WIFSIGNALED(status):
        died_of = os.WTERMSIG(status)
        signal.signal(died_of, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
