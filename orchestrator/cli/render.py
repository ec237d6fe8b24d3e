"""Human rendering of command records: the result parsed once into its command's result model
(the registry's), drawn by the renderer the command table declares for it."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.cli.errors import describe_error, record_error
from orchestrator.cli.table import clean
from orchestrator.commands.table import COMMAND_TABLE, check_command_table
from tasks.commands.base import CommandResult
from tasks.errors import InvalidResultError, LiveResponseError
from tasks.registry import REGISTRY

#: Last line of a result the agent cut to fit the output limit.
TRUNCATED_MARKER = "(output truncated: limit reached)"


def parse_result(record: dict[str, Any]) -> CommandResult | None:
    """A record's result as its command's result model; None when it has none, or when its
    command is not one this CLI knows. InvalidResultError when it does not fit the model."""
    spec = REGISTRY.get(str(record.get("command")))
    raw = record.get("result")
    if spec is None or raw is None:
        return None
    return spec.parse_result(raw)


def verdict_of(record: dict[str, Any]) -> LiveResponseError | None:
    """What a completed command failed at by its command's verdict (a script that exited
    non-zero), or None; None too for a result that does not fit (its error is the record's)."""
    side = COMMAND_TABLE.get(str(record.get("command")))
    if record.get("status") != "completed" or side is None or side.verdict is None:
        return None
    try:
        result = parse_result(record)
    except InvalidResultError:
        return None
    return side.verdict(result) if result is not None else None


def render_record(record: dict[str, Any]) -> str:
    """A command record as the analyst reads it; one line for anything but `completed`."""
    error = record_error(record)
    if error is not None:
        return clean(describe_error(error))
    check_command_table(REGISTRY)
    command = str(record.get("command"))
    if command not in REGISTRY:
        lines = _render_unknown(record.get("result") or {})
    else:
        result = parse_result(record)
        if result is None:
            raise InvalidResultError(f"{command} completed without a result")
        lines = COMMAND_TABLE[command].render(result)
    if record.get("truncated"):
        lines.append(TRUNCATED_MARKER)
    return "\n".join(lines)


def _render_unknown(result: Any) -> list[str]:
    # A command this CLI does not know yet (a newer orchestrator): show its result as it came.
    return [clean(line) for line in json.dumps(result, indent=2, sort_keys=True).splitlines()]
