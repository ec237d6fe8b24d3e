"""A one-line progress bar on stderr for transfers over a few MB (file downloads, getfile)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Transfers smaller than this show no bar: they are over before one would help.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
#: Fewest seconds between two redraws.
REDRAW_EVERY_S = 0.1
#: Characters of the bar itself.
BAR_WIDTH = 30


def wants_bar(total_bytes: int | None, json_output: bool, stream: TextIO | None = None) -> bool:
    """Whether a transfer of `total_bytes` gets a bar: big enough, not --json, a terminal."""
    out = stream or sys.stderr
    return (not json_output and total_bytes is not None and total_bytes >= PROGRESS_MIN_BYTES
            and out.isatty())


class ProgressBar:
    """`label [#####.....]  45.0/100.0 MiB  45%`, redrawn in place; silent when disabled."""

    def __init__(self, label: str, total_bytes: int, *, enabled: bool,
                 stream: TextIO | None = None) -> None:
        self.label = label
        self.total_bytes = max(total_bytes, 1)
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._drawn_at = 0.0
        self._shown = False

    def update(self, done_bytes: int) -> None:
        """Show `done_bytes` of the total (at most every REDRAW_EVERY_S)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn_at < REDRAW_EVERY_S and done_bytes < self.total_bytes:
            return
        self._drawn_at = now
        self.stream.write("\r" + self.line(done_bytes))
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        """End the bar's line, so what follows starts on a fresh one."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False

    def line(self, done_bytes: int) -> str:
        """The bar's text for `done_bytes` done."""
        done = min(max(done_bytes, 0), self.total_bytes)
        filled = int(BAR_WIDTH * done / self.total_bytes)
        mib = 1024 * 1024
        return (f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                f"{done / mib:.1f}/{self.total_bytes / mib:.1f} MiB "
                f"{100 * done // self.total_bytes:3d}%")
