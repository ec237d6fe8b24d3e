"""The orchestrator's size limit bound into the signed arguments of `memdump` and `collect`,
as `prepare_getfile` does for `getfile`: the agent refuses up front what would not be kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.commands.collect import CollectArgs
from tasks.commands.memory import MemdumpArgs
from tasks.errors import UsageError

if TYPE_CHECKING:
    from orchestrator.plane import ControlPlane


def prepare_memdump(plane: ControlPlane, args: MemdumpArgs) -> MemdumpArgs:
    """The dump may be as large as a getfile (LR_GETFILE_MAX_BYTES), no larger."""
    return args.model_copy(update={"max_bytes": plane.settings.getfile_max_bytes})


def prepare_collect(plane: ControlPlane, args: CollectArgs) -> CollectArgs:
    """The analyst's --max-bytes, or the getfile limit; UsageError when it is over that limit."""
    limit = plane.settings.getfile_max_bytes
    if args.max_bytes is None:
        return args.model_copy(update={"max_bytes": limit})
    if args.max_bytes > limit:
        raise UsageError(f"collect: --max-bytes {args.max_bytes} is over the orchestrator's "
                         f"limit of {limit} bytes",
                         hint="give a smaller --max-bytes (LR_GETFILE_MAX_BYTES is the most)")
    return args
