"""Points in time as analysts type them: a duration back from now (`90m`, `2h`, `7d`), an ISO
time (`2026-03-01`, `2026-03-01 14:00`, `2026-03-01T14:00:00+02:00`; the endpoint's local time
unless it names its offset, as `find -newermt` reads it), or `@EPOCH` seconds."""

from __future__ import annotations

from datetime import datetime

from tasks.durations import parse_duration
from tasks.errors import UsageError

#: What `parse_point_in_time` accepts, for error messages.
TIME_HELP = ("a duration back from now (90m, 2h, 7d), an ISO time (2026-03-01 14:00, local "
             "unless it has +HH:MM or Z) or @EPOCH")


def parse_point_in_time(text: str, now: float) -> float:
    """Seconds since the epoch `text` names (durations count back from `now`); ValueError
    naming the text otherwise."""
    spec = text.strip()
    if spec.startswith("@"):
        try:
            return float(spec[1:])
        except ValueError:
            raise ValueError(f"invalid time {text!r}: give {TIME_HELP}") from None
    try:
        return now - parse_duration(spec)
    except UsageError:
        pass
    try:
        return datetime.fromisoformat(spec).timestamp()  # naive: local time
    except ValueError:
        raise ValueError(f"invalid time {text!r}: give {TIME_HELP}") from None
