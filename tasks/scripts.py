"""Lua scripts queued on a Redis pipeline without redis-py's extra round trip.

redis-py sends `SCRIPT EXISTS` before every pipeline that holds a registered script called
with `client=pipe` (so it can `SCRIPT LOAD` a missing one first): one more round trip on each
command's path. Queued as `EVAL` of its text instead, the script needs no check, and it is
still right after a `SCRIPT FLUSH` or a Redis restart (Redis caches it by its digest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.commands.core import Script


def queue_script(pipe: Any, script: Script, keys: Sequence[str],
                 args: Sequence[Any]) -> None:
    """Queue one call of `script` on `pipe` (its reply comes back with the pipeline's)."""
    pipe.eval(script.script, len(keys), *keys, *args)
