"""The orchestrator's side of every command, declared once: how the CLI draws its result, what
the orchestrator resolves before it signs the envelope, what it records once the command
completed.

The table is checked against the registry when the API app is built and when the CLI renders,
as the agent checks its handlers (`worker_agent/handlers.py`): a command without an entry, an
entry the registry does not know, or a function taking another model than the registry's
command does is refused, loudly, before anything runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.cli import render_evidence as evidence
from orchestrator.cli import render_results as show
from orchestrator.cli import render_system as show_system
from orchestrator.commands.effects import record_isolation, record_release, set_session_cwd
from orchestrator.commands.verdicts import script_verdict
from orchestrator.files.library import prepare_library_args
from orchestrator.files.size_limits import prepare_collect, prepare_memdump
from orchestrator.files.transfer import prepare_getfile
from tasks.commands.base import CommandArgs
from tasks.errors import LiveResponseError
from tasks.registry import CommandSpec

if TYPE_CHECKING:
    from orchestrator.commands.records import CommandRecord
    from orchestrator.plane import ControlPlane

# Each function takes its own command's model (DirResult, GetFileArgs, ...), which a Callable
# over the base classes cannot express; check_command_table compares the annotations with the
# registry's models instead.
#: Draws a result model as the analyst's lines.
Renderer = Callable[[Any], list[str]]
#: Resolves what only the orchestrator knows (a library file's sha256 and size, its own size
#: limit) into the arguments it signs; raises one of our errors, audited as a denial, if it
#: cannot.
Preparer = Callable[["ControlPlane", Any], CommandArgs]
#: Records what a completed command changed, from its result model.
AfterEffect = Callable[["ControlPlane", "CommandRecord", Any], None]
#: Judges a completed command's result model: the error it still counts as for the exit code
#: (a script that exited non-zero), or None.
Verdict = Callable[[Any], LiveResponseError | None]


@dataclass(frozen=True)
class CommandSide:
    """One command as the orchestrator and its CLI handle it."""

    #: The CLI's lines for the command's result model.
    render: Renderer
    #: Run before the envelope is signed; None: the arguments are signed as parsed.
    prepare: Preparer | None = None
    #: Run once the command completed with a result that fits its model; None: nothing to do.
    after: AfterEffect | None = None
    #: Whether a completed result still failed at its purpose; None: completed is success.
    verdict: Verdict | None = None


#: Command name → its side. Add a line here when a command is added to the registry.
COMMAND_TABLE: dict[str, CommandSide] = {
    "dir": CommandSide(render=show.render_dir),
    "cd": CommandSide(render=show.render_cd, after=set_session_cwd),
    "fileinfo": CommandSide(render=show.render_fileinfo),
    "findfile": CommandSide(render=show.render_findfile),
    "getfilehash": CommandSide(render=show.render_getfilehash),
    "getfile": CommandSide(render=show.render_getfile, prepare=prepare_getfile),
    "processes": CommandSide(render=show.render_processes),
    "netstat": CommandSide(render=show.render_netstat),
    "persistence": CommandSide(render=show.render_persistence),
    "services": CommandSide(render=show.render_services),
    "cat": CommandSide(render=evidence.render_cat),
    "head": CommandSide(render=evidence.render_head),
    "tail": CommandSide(render=evidence.render_tail),
    "strings": CommandSide(render=evidence.render_strings),
    "hexdump": CommandSide(render=evidence.render_hexdump),
    "logs": CommandSide(render=evidence.render_logs),
    "users": CommandSide(render=evidence.render_users),
    "sessions": CommandSide(render=evidence.render_sessions),
    "kill": CommandSide(render=show.render_kill),
    "remediate": CommandSide(render=show.render_remediate),
    "undo": CommandSide(render=show.render_undo),
    "put": CommandSide(render=show.render_put, prepare=prepare_library_args),
    "runscript": CommandSide(render=show.render_runscript, prepare=prepare_library_args,
                             verdict=script_verdict),
    "modules": CommandSide(render=show_system.render_modules),
    "mounts": CommandSide(render=show_system.render_mounts),
    "interfaces": CommandSide(render=show_system.render_interfaces),
    "env": CommandSide(render=show_system.render_env),
    "history": CommandSide(render=show_system.render_history),
    "memdump": CommandSide(render=show_system.render_memdump, prepare=prepare_memdump),
    "collect": CommandSide(render=show_system.render_collect, prepare=prepare_collect),
    "isolate": CommandSide(render=show.render_isolate, after=record_isolation),
    "release": CommandSide(render=show.render_release, after=record_release),
}


def check_command_table(registry: Mapping[str, CommandSpec],
                        table: Mapping[str, CommandSide] = COMMAND_TABLE) -> None:
    """Raise ValueError unless commands and entries match one to one, models included."""
    missing = sorted(set(registry) - set(table))
    if missing:
        raise ValueError(f"commands without an entry in the orchestrator's command table: "
                         f"{missing}")
    unknown = sorted(set(table) - set(registry))
    if unknown:
        raise ValueError(f"command table entries for commands the registry does not know: "
                         f"{unknown}")
    for name, spec in registry.items():
        check_side(spec, table[name])


def check_side(spec: CommandSpec, side: CommandSide) -> None:
    """Raise ValueError unless each function of `side` takes the model the registry gives it:
    the renderer, the after-effect and the verdict the result model, the preparer the
    argument model."""
    problems = []
    if _takes(side.render, 0) is not spec.result_model:
        problems.append(f"its renderer takes {_takes(side.render, 0)!r}")
    if side.after is not None and _takes(side.after, 2) is not spec.result_model:
        problems.append(f"its after-effect takes {_takes(side.after, 2)!r}")
    if side.verdict is not None and _takes(side.verdict, 0) is not spec.result_model:
        problems.append(f"its verdict takes {_takes(side.verdict, 0)!r}")
    if problems:
        raise ValueError(f"{spec.name!r}: {' and '.join(problems)}, the registry's result "
                         f"model is {spec.result_model!r}")
    if side.prepare is not None:
        takes = _takes(side.prepare, 1)
        if not (isinstance(takes, type) and issubclass(spec.args_model, takes)):
            raise ValueError(f"{spec.name!r}: its preparer takes {takes!r}, the registry's "
                             f"argument model is {spec.args_model!r}")


def prepare(plane: ControlPlane, spec: CommandSpec, args: CommandArgs) -> CommandArgs:
    """The arguments to sign for `spec`: resolved by its preparer, or unchanged."""
    preparer = COMMAND_TABLE[spec.name].prepare
    return preparer(plane, args) if preparer is not None else args


def _takes(func: Callable[..., Any], position: int) -> object:
    """The class `func` declares for its parameter at `position`.

    Only that annotation is resolved, by name in the function's module: the others may name
    classes imported for type checking alone (the control plane, which the CLI never loads).
    Anything else (no such parameter, an expression) comes back as is, and so never matches.
    """
    params = list(inspect.signature(func).parameters.values())
    if position >= len(params):
        return None
    annotation = params[position].annotation
    if isinstance(annotation, str):
        return getattr(func, "__globals__", {}).get(annotation, annotation)
    return annotation
