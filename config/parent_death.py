"""Tie a child process's life to ours (Linux `prctl`): it is signalled when we die, however.

`PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, not only the process:
start such children from a thread that lives as long as they should (the main thread).
`PR_SET_CHILD_SUBREAPER` makes orphaned descendants (a double fork) ours instead of init's, so
they can still be found and ended. Elsewhere than Linux both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

#: prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    prctl.restype = ctypes.c_int
    return prctl  # type: ignore[no-any-return]


#: Resolved once, in the parent: a child between fork and exec only makes the call.
_PRCTL = _load_prctl()


def supported() -> bool:
    """Whether this platform can tie children to their parent."""
    return _PRCTL is not None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` that has the child receive `sig` when the thread starting it dies."""
    parent = os.getpid()
    prctl = _PRCTL

    def arm() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would ever signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


def tie_to_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Have this process receive `sig` when its parent `parent_pid` dies (now, if it already
    has); whether the platform could arrange it."""
    if _PRCTL is None:
        return False
    _PRCTL(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; whether it could."""
    if _PRCTL is None:
        return False
    return _PRCTL(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0) == 0
