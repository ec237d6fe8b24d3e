"""Durations as analysts type them: `90s`, `15m`, `2h`, `7d`, or plain seconds."""

from __future__ import annotations

import math
import re

from tasks.errors import UsageError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def parse_duration(text: str) -> float:
    """Seconds in `text`; UsageError naming the text when it is not a positive duration."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"invalid duration {text!r}",
                         hint="give a positive number with s, m, h or d, e.g. 90s, 2h, 7d")
    return seconds


def format_duration(seconds: float) -> str:
    """The largest whole unit that fits: 604800 → `7d`, 5400 → `90m`, 45 → `45s`."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def check_expiry(expires_s: float | None, default_s: float, max_s: float) -> float:
    """The wait a command gets: `expires_s` when given (positive, at most `max_s`), else
    `default_s`. UsageError names the limit."""
    if expires_s is None:
        return default_s
    if not math.isfinite(expires_s) or expires_s <= 0:
        raise UsageError(f"invalid expiry {expires_s!r}", hint="give a positive duration")
    if expires_s > max_s:
        raise UsageError(
            f"expiry {format_duration(expires_s)} is over the maximum of {format_duration(max_s)}",
            hint="choose a shorter --expires (the orchestrator's LR_COMMAND_EXPIRY_MAX_S)")
    return expires_s
