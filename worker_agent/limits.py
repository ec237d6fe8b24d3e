"""Keep results small: cut the longest list in a result until its JSON fits the limit."""

from __future__ import annotations

import json
from typing import Any


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), default=str))


def truncate_result(result: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], bool]:
    """Return (result, truncated): the longest list field cut so the whole fits `max_bytes`."""
    if json_size(result) <= max_bytes:
        return result, False
    lists = [k for k, v in result.items() if isinstance(v, list) and v]
    if not lists:
        return result, False
    name = max(lists, key=lambda k: len(result[k]))
    items = result[name]
    lo, hi = 0, len(items)
    # Largest prefix that fits, by bisection: sizes grow with the prefix.
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if json_size({**result, name: items[:mid]}) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return {**result, name: items[:lo]}, True
