"""Per-command argument preparation on the orchestrator, before the envelope is signed.

Some commands name things only the orchestrator can resolve (a library file's name becomes its
sha256 and size, so the agent can check what it receives). A preparer gets the control plane
and the parsed arguments and returns the arguments to sign; it raises one of our errors (which
the dispatcher audits as a denial) when the request cannot be resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.library import prepare_library_args
from orchestrator.transfer import prepare_getfile
from tasks.commands.base import CommandArgs
from tasks.registry import CommandSpec

if TYPE_CHECKING:
    from orchestrator.plane import ControlPlane

Preparer = Callable[["ControlPlane", CommandArgs], CommandArgs]

#: Command name → its preparer. Commands without one are sent as parsed.
PREPARERS: dict[str, Preparer] = {
    "getfile": prepare_getfile,
    "put": prepare_library_args,
    "runscript": prepare_library_args,
}


def prepare(plane: ControlPlane, spec: CommandSpec, args: CommandArgs) -> CommandArgs:
    """The arguments to sign for `spec`: resolved by its preparer, or unchanged."""
    preparer = PREPARERS.get(spec.name)
    return preparer(plane, args) if preparer is not None else args
