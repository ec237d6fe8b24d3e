"""Progress of long commands and transfers: a one-line bar on stderr for anything over a few
MB (getfile, collect, memdump, evidence downloads), and the poll that follows a command until
its outcome."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

#: Transfers smaller than this show no bar: they are over before one would help.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
#: Fewest seconds between two redraws.
REDRAW_EVERY_S = 0.1
#: Characters of the bar itself.
BAR_WIDTH = 30
#: Seconds between two looks at a command being followed, once it has run a while.
POLL_S = 0.25
#: Seconds before the second look: most commands end within milliseconds, so the wait
#: doubles from here up to POLL_S instead of adding a quarter second to each.
FIRST_POLL_S = 0.01
#: States of a command that has no outcome yet.
UNFINISHED = ("queued", "running", "pending-approval")
#: Seconds a final state may wait for its outcome (result or error) to be recorded with it.
OUTCOME_GRACE_S = 10.0


def wants_bar(total_bytes: int | None, json_output: bool, stream: TextIO | None = None) -> bool:
    """Whether a transfer of `total_bytes` gets a bar: big enough, not --json, a terminal."""
    out = stream or sys.stderr
    return (not json_output and total_bytes is not None and total_bytes >= PROGRESS_MIN_BYTES
            and out.isatty())


class ProgressBar:
    """`label [#####.....]  45.0/100.0 MiB  45%`, redrawn in place; silent when disabled.
    Without a total (an archive or dump made while sent) it counts: `label  45.0 MiB so far`."""

    def __init__(self, label: str, total_bytes: int | None, *, enabled: bool,
                 stream: TextIO | None = None) -> None:
        self.label = label
        self.total_bytes = None if total_bytes is None else max(total_bytes, 1)
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._drawn_at = 0.0
        self._shown = False

    def update(self, done_bytes: int) -> None:
        """Show `done_bytes` of the total (at most every REDRAW_EVERY_S)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn_at < REDRAW_EVERY_S and (self.total_bytes is None
                                                       or done_bytes < self.total_bytes):
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
        mib = 1024 * 1024
        if self.total_bytes is None:
            return f"{self.label}  {max(done_bytes, 0) / mib:.1f} MiB so far"
        done = min(max(done_bytes, 0), self.total_bytes)
        filled = int(BAR_WIDTH * done / self.total_bytes)
        return (f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                f"{done / mib:.1f}/{self.total_bytes / mib:.1f} MiB "
                f"{100 * done // self.total_bytes:3d}%")


def has_outcome(record: dict[str, Any]) -> bool:
    """Whether a command record is final and carries its outcome (a result or an error)."""
    return (record.get("status") not in UNFINISHED
            and (record.get("result") is not None or record.get("error") is not None))


def follow_record(fetch: Callable[[], dict[str, Any]], *, label: str, json_output: bool,
                  timeout_s: float | None = None, stream: TextIO | None = None
                  ) -> dict[str, Any]:
    """Poll `fetch()` (a command's record) until its outcome is recorded, drawing a bar of
    its `progress` ({"bytes", "size"}) meanwhile; at `timeout_s`, the record as it stands.

    The state turns final a moment before the orchestrator records the outcome with it, so a
    final record without one is looked at again (for at most OUTCOME_GRACE_S).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    final_since: float | None = None
    bar: ProgressBar | None = None
    delay_s = FIRST_POLL_S
    try:
        while True:
            record = fetch()
            if has_outcome(record):
                return record
            now = time.monotonic()
            if record.get("status") not in UNFINISHED:
                final_since = final_since or now
                if now - final_since > OUTCOME_GRACE_S:
                    return record
            progress = record.get("progress") or {}
            done = int(progress.get("bytes") or 0)
            # A streamed transfer has no size: it is counted once it is big enough to wait on.
            size = int(progress["size"]) if progress.get("size") is not None else None
            if bar is None and "bytes" in progress and wants_bar(
                    done if size is None else size, json_output, stream):
                bar = ProgressBar(label, size, enabled=True, stream=stream)
            if bar is not None:
                bar.update(done)
            if deadline is not None and now > deadline:
                return record
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, POLL_S)
    finally:
        if bar is not None:
            bar.finish()
