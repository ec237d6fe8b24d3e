"""The agent's explicit map from command name to the handler that runs it, imported lazily."""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tasks.commands.base import CommandResult
from tasks.registry import CommandSpec
from worker_agent.context import CommandContext

# Each handler takes its own argument model (DirArgs, KillArgs, ...), which a
# Callable[[CommandArgs, ...]] cannot express; check_signature compares the annotations with
# the registry's models instead, when the handler is first imported.
Handler = Callable[[Any, CommandContext], CommandResult]
#: Where a handler lives, "module:function", or the handler itself.
HandlerRef = str | Handler

#: Command name → its handler, imported when the command first runs: an agent holds in memory
#: only the command families it was asked for. Add a line here when a command is added to the
#: registry.
HANDLERS: dict[str, HandlerRef] = {
    "dir": "worker_agent.filesystem:run_dir",
    "cd": "worker_agent.filesystem:run_cd",
    "fileinfo": "worker_agent.filesystem:run_fileinfo",
    "findfile": "worker_agent.filesystem:run_findfile",
    "getfilehash": "worker_agent.filesystem:run_getfilehash",
    "getfile": "worker_agent.acquisition:run_getfile",
    "processes": "worker_agent.processes:run_processes",
    "netstat": "worker_agent.network:run_netstat",
    "persistence": "worker_agent.persistence:run_persistence",
    "services": "worker_agent.services:run_services",
    "cat": "worker_agent.content:run_cat",
    "head": "worker_agent.content:run_head",
    "tail": "worker_agent.content:run_tail",
    "strings": "worker_agent.content:run_strings",
    "hexdump": "worker_agent.content:run_hexdump",
    "logs": "worker_agent.logs:run_logs",
    "users": "worker_agent.accounts:run_users",
    "sessions": "worker_agent.accounts:run_sessions",
    "kill": "worker_agent.processes:run_kill",
    "remediate": "worker_agent.remediation:run_remediate",
    "undo": "worker_agent.remediation:run_undo",
    "put": "worker_agent.library_files:run_put",
    "runscript": "worker_agent.scripts:run_runscript",
    "modules": "worker_agent.system_state:run_modules",
    "mounts": "worker_agent.system_state:run_mounts",
    "interfaces": "worker_agent.interfaces:run_interfaces",
    "env": "worker_agent.user_traces:run_env",
    "history": "worker_agent.user_traces:run_history",
    "memdump": "worker_agent.memdump:run_memdump",
    "collect": "worker_agent.collect:run_collect",
    "isolate": "worker_agent.isolation:run_isolate",
    "release": "worker_agent.isolation:run_release",
}


class HandlerTable(Mapping[str, Handler]):
    """The handlers of a registry's commands, each imported and checked against the
    registry's models the first time it is looked up."""

    def __init__(self, registry: Mapping[str, CommandSpec],
                 refs: Mapping[str, HandlerRef] = HANDLERS) -> None:
        check_handlers(registry, refs, load=False)
        self._registry = registry
        self._refs = dict(refs)
        self._loaded: dict[str, Handler] = {}

    def __getitem__(self, name: str) -> Handler:
        handler = self._loaded.get(name)
        if handler is None:
            handler = load_handler(self._refs[name])
            check_signature(self._registry[name], handler)
            self._loaded[name] = handler
        return handler

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


def load_handler(ref: HandlerRef) -> Handler:
    """The handler `ref` names ("module:function"), imported now; `ref` if it is one."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def check_handlers(registry: Mapping[str, CommandSpec],
                   refs: Mapping[str, HandlerRef] = HANDLERS, *, load: bool = True) -> None:
    """Raise ValueError unless commands and handlers match one to one; with `load`, each
    handler is imported and its models compared with the registry's too."""
    missing = sorted(set(registry) - set(refs))
    if missing:
        raise ValueError(f"commands without a handler on the agent: {missing}")
    unknown = sorted(set(refs) - set(registry))
    if unknown:
        raise ValueError(f"handlers for commands the registry does not know: {unknown}")
    if load:
        for name, spec in registry.items():
            check_signature(spec, load_handler(refs[name]))


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
