"""The agent's explicit map from command name to the handler that runs it."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

from tasks.commands.base import CommandResult
from tasks.registry import CommandSpec
from worker_agent.accounts import run_sessions, run_users
from worker_agent.acquisition import run_getfile
from worker_agent.collect import run_collect
from worker_agent.content import run_cat, run_head, run_hexdump, run_strings, run_tail
from worker_agent.context import CommandContext
from worker_agent.filesystem import run_cd, run_dir, run_fileinfo, run_findfile, run_getfilehash
from worker_agent.interfaces import run_interfaces
from worker_agent.isolation import run_isolate, run_release
from worker_agent.library_files import run_put
from worker_agent.logs import run_logs
from worker_agent.memdump import run_memdump
from worker_agent.network import run_netstat
from worker_agent.persistence import run_persistence
from worker_agent.processes import run_kill, run_processes
from worker_agent.remediation import run_remediate, run_undo
from worker_agent.scripts import run_runscript
from worker_agent.services import run_services
from worker_agent.system_state import run_modules, run_mounts
from worker_agent.user_traces import run_env, run_history

# Each handler takes its own argument model (DirArgs, KillArgs, ...), which a
# Callable[[CommandArgs, ...]] cannot express; check_handlers compares the annotations with
# the registry's models instead, once, when the agent starts.
Handler = Callable[[Any, CommandContext], CommandResult]

#: Command name → handler. Add a line here when a command is added to the registry.
HANDLERS: dict[str, Handler] = {
    "dir": run_dir,
    "cd": run_cd,
    "fileinfo": run_fileinfo,
    "findfile": run_findfile,
    "getfilehash": run_getfilehash,
    "getfile": run_getfile,
    "processes": run_processes,
    "netstat": run_netstat,
    "persistence": run_persistence,
    "services": run_services,
    "cat": run_cat,
    "head": run_head,
    "tail": run_tail,
    "strings": run_strings,
    "hexdump": run_hexdump,
    "logs": run_logs,
    "users": run_users,
    "sessions": run_sessions,
    "kill": run_kill,
    "remediate": run_remediate,
    "undo": run_undo,
    "put": run_put,
    "runscript": run_runscript,
    "modules": run_modules,
    "mounts": run_mounts,
    "interfaces": run_interfaces,
    "env": run_env,
    "history": run_history,
    "memdump": run_memdump,
    "collect": run_collect,
    "isolate": run_isolate,
    "release": run_release,
}


def check_handlers(
    registry: Mapping[str, CommandSpec], handlers: Mapping[str, Handler] = HANDLERS
) -> None:
    """Raise ValueError unless commands and handlers match one to one, models included."""
    missing = sorted(set(registry) - set(handlers))
    if missing:
        raise ValueError(f"commands without a handler on the agent: {missing}")
    unknown = sorted(set(handlers) - set(registry))
    if unknown:
        raise ValueError(f"handlers for commands the registry does not know: {unknown}")
    for name, spec in registry.items():
        check_signature(spec, handlers[name])


def check_signature(spec: CommandSpec, handler: Handler) -> None:
    """Raise ValueError unless `handler` takes the spec's argument model and returns its result."""
    hints = typing.get_type_hints(handler)
    params = [h for key, h in hints.items() if key != "return"]
    takes = params[0] if params else None
    if takes is not spec.args_model:
        raise ValueError(
            f"handler of {spec.name!r} takes {takes!r}, the registry sends {spec.args_model!r}"
        )
    if hints.get("return") is not spec.result_model:
        raise ValueError(
            f"handler of {spec.name!r} returns {hints.get('return')!r},"
            f" the registry expects {spec.result_model!r}"
        )
