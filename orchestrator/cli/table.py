"""Plain-text building blocks of human output: safe cells, times, ages and aligned tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

#: Placeholder for a value that is missing or could not be read.
MISSING = "-"


def clean(value: object) -> str:
    """`value` as text with control characters escaped: file names and command lines come from
    the endpoint, and an attacker's escape sequences must not reach the analyst's terminal."""
    if value is None:
        return MISSING
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_time(ts: float | None) -> str:
    """A timestamp as local ISO time to the second (`2025-03-01 14:02:11`)."""
    if ts is None:
        return MISSING
    try:
        return datetime.fromtimestamp(float(ts)).isoformat(sep=" ", timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return clean(ts)


def format_age(ts: float | None, now: float) -> str:
    """How long ago `ts` was: `4s ago`, `12m ago`, `3h ago`, `2d ago`; `never` for None."""
    if ts is None:
        return "never"
    seconds = max(now - float(ts), 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def format_mib(size_bytes: int | None) -> str:
    """Bytes as MiB with one decimal."""
    return MISSING if size_bytes is None else f"{size_bytes / (1024 * 1024):.1f}"


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()
) -> str:
    """Columns padded to their widest cell; `right` lists columns aligned right (numbers)."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    right_cols = set(right)
    last = len(headers) - 1

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            if i in right_cols:
                parts.append(cell.rjust(widths[i]))
            elif i == last:
                parts.append(cell)  # no trailing blanks
            else:
                parts.append(cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])
