"""The processes a running command started, so its cancel or time limit can end them from
another thread.

A command that runs a program (`runscript`, `logs` through journalctl) registers how to stop
it for as long as the program runs; the registration belongs to the thread running the
command. The agent's watchdog (`watchdog.py`) calls those stops when it cancels the command or
its time limit passes: a thread waiting on the program's output is then freed by the program's
end, whatever system call it waits in. Knows nothing of Celery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

Stop = Callable[[], None]

_lock = threading.Lock()
#: Thread id → the stops registered by the command that thread runs.
_stops: dict[int, list[Stop]] = {}


@contextmanager
def stopped_with_command(stop: Stop) -> Iterator[None]:
    """Within the block, `stop` ends what the command in this thread started when the command
    is cancelled or passes its time limit (`stop_processes_of`)."""
    thread_id = threading.get_ident()
    with _lock:
        _stops.setdefault(thread_id, []).append(stop)
    try:
        yield
    finally:
        with _lock:
            registered = _stops.get(thread_id, [])
            if stop in registered:
                registered.remove(stop)
            if not registered:
                _stops.pop(thread_id, None)


def stop_processes_of(thread_id: int) -> int:
    """Call every stop the command in thread `thread_id` registered; how many were called."""
    with _lock:
        stops = list(_stops.get(thread_id, []))
    for stop in stops:
        try:
            stop()
        except Exception:  # one stop failing must not keep the others from running
            log.exception("could not stop a process of the command in thread %s", thread_id)
    return len(stops)
