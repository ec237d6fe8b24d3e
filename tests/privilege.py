"""Run test code without root: permission bits do not stop root, so a forked child drops it."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable

#: The uid and gid of the unprivileged account the child becomes.
NOBODY = 65534


def run_as_nobody(work: Callable[[], str], close_fds: Iterable[int] = ()) -> str:
    """Return what `work()` returns when run in a forked child that became `nobody`.

    No exec: the interpreter may live where nobody cannot reach it (e.g. under /root). The
    child first closes its copies of `close_fds`, so only this process holds those.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(read_end)
            for fd in close_fds:
                os.close(fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(work())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
    return data
