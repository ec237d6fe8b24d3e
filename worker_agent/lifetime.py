"""Each pool process of a prefork agent dies with the agent's main process, however that dies.

Celery's prefork children notice their parent is gone only between tasks: one busy with a
`runscript` ran it to its end after the agent was SIGKILLed. Tied by the kernel
(`PR_SET_PDEATHSIG`), the pool process is killed at once, and its script's guard
(`script_guard.py`) then ends the script's whole tree. The threads pool has no pool process:
its commands die with the agent's one process, and a script's guard is tied to the pool
thread that started it, which lives as long as that process.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import signals

from config.parent_death import tie_to_parent


def tie_pool_processes(main_pid: int) -> None:
    """Arm, in every pool process the agent whose main process is `main_pid` forks, a SIGKILL
    for when that main process dies."""

    def on_process_init(**_: Any) -> None:
        if os.getpid() != main_pid:
            tie_to_parent(main_pid, signal.SIGKILL)

    # weak=False: the closure has no other reference and must live as long as the worker.
    signals.worker_process_init.connect(on_process_init, weak=False)
