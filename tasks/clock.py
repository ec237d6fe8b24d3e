"""The one source of time; tests replace `now` to move the clock."""

from __future__ import annotations

import time


def now() -> float:
    """Seconds since the epoch, as a float."""
    return time.time()
