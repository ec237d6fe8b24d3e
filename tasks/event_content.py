"""What a Celery task event may carry: state, names and times, never a command's content.

Task events travel through the broker to anyone listening (Flower, `celery events`). Celery
puts the task's arguments (`task-received`: its argsrepr), a repr of its return value
(`task-succeeded`) and an exception with its traceback (`task-failed`, `task-retried`) in
them; results and error messages hold evidence (hashes, paths, listings, script output). The
agent sends its events through `withhold_content`, and `lr flower` passes every event it
receives through it again, whoever sent it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: What stands in an event field whose content is withheld.
WITHHELD = "<withheld>"
#: The argsrepr the orchestrator gives each command (`<getfilehash 1f0c…>`): kept as is.
SAFE_ARGSREPR_RE = re.compile(r"<[a-z][a-z0-9_]{0,63} [A-Za-z0-9-]{1,64}>")
#: The kwargsrepr the orchestrator gives each command.
SAFE_KWARGSREPR = "{}"
#: The leading name of an exception's repr (`FileNotFoundError(2, ...)` → `FileNotFoundError`).
EXCEPTION_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}(?=\(|$)")
#: Fields that hold content in every case: a result's repr, a traceback's text.
ALWAYS_WITHHELD = ("result", "traceback")


def withhold_content(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of one event's fields with results, tracebacks, exception messages and any
    arguments other than our own argsrepr replaced by `WITHHELD`."""
    out = dict(fields)
    for name in ALWAYS_WITHHELD:
        if out.get(name) not in (None, ""):
            out[name] = WITHHELD
    if "exception" in out and out["exception"] not in (None, ""):
        out["exception"] = exception_name(out["exception"])
    if "args" in out and not _is_safe_argsrepr(out["args"]):
        out["args"] = WITHHELD
    if "kwargs" in out and out["kwargs"] != SAFE_KWARGSREPR:
        out["kwargs"] = WITHHELD
    return out


def exception_name(text: object) -> str:
    """The exception's class name from its repr, without its message; else `WITHHELD`."""
    match = EXCEPTION_NAME_RE.match(text) if isinstance(text, str) else None
    return match.group(0) if match else WITHHELD


def _is_safe_argsrepr(value: object) -> bool:
    return isinstance(value, str) and SAFE_ARGSREPR_RE.fullmatch(value) is not None
