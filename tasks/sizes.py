"""Sizes as analysts type them: `4096`, `4k`, `10M`, `2G` (powers of 1024), and size ranges:
`+10M` (more than), `-4k` (less than), `1k..1M` (from, to, both included), `512` (exactly)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"(\d+)([bkmgt]?)")

#: What `parse_size` and `parse_size_range` accept, for error hints.
SIZE_HELP = "a number of bytes with an optional k, M, G or T (powers of 1024), e.g. 4096, 10M"
RANGE_HELP = "+N (more than), -N (less than), A..B (from A to B) or N (exactly), e.g. +10M, 1k..1M"


def parse_size(text: str) -> int:
    """Bytes in `text`; ValueError naming the text and the accepted forms."""
    match = _SIZE_RE.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"invalid size {text!r}: give {SIZE_HELP}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_size_range(text: str) -> tuple[int | None, int | None]:
    """The inclusive (lowest, highest) sizes `text` allows, None where open.

    ValueError naming the text when it is not a range or the range is empty.
    """
    spec = text.strip()
    try:
        if spec.startswith("+"):
            return parse_size(spec[1:]) + 1, None
        if spec.startswith("-"):
            below = parse_size(spec[1:])
            if below == 0:
                raise ValueError(f"size range {text!r} matches nothing (nothing is under 0)")
            return None, below - 1
        if ".." in spec:
            low_text, _, high_text = spec.partition("..")
            low = parse_size(low_text) if low_text else None
            high = parse_size(high_text) if high_text else None
            if low is not None and high is not None and low > high:
                raise ValueError(f"size range {text!r} is empty: {low} > {high}")
            return low, high
        exact = parse_size(spec)
        return exact, exact
    except ValueError as exc:
        if "range" in str(exc):
            raise
        raise ValueError(f"invalid size range {text!r}: give {RANGE_HELP}") from None


def in_range(size: int, bounds: tuple[int | None, int | None]) -> bool:
    """Whether `size` lies within the inclusive `bounds`."""
    low, high = bounds
    return (low is None or size >= low) and (high is None or size <= high)
