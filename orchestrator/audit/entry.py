"""The checks of one stored audit entry on its own: its id, its fields, its form and its hash.

`audit.walk.ChainWalk` runs them for each entry, with the checks that span entries (links,
signatures, runs, keys, the witness).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from tasks.auditchain import (
    ENTRY_FIELDS,
    MAC_FIELD,
    SIG_FIELD,
    stored_entry_hash,
    to_canonical_json,
)

#: Every field a stored entry may have.
KNOWN_FIELDS = frozenset((*ENTRY_FIELDS, SIG_FIELD, MAC_FIELD))
#: Every field a stored entry must have.
REQUIRED_FIELDS = frozenset(ENTRY_FIELDS)


def order_of(entry_id: str) -> tuple[int, int] | None:
    """`id_order` of a stream id; None when `entry_id` is not one."""
    ms, dash, seq = entry_id.partition("-")
    if not (dash and ms.isdigit() and seq.isdigit() and ms.isascii() and seq.isascii()):
        return None
    return int(ms), int(seq)


def check_entry(
    entry_id: str, fields: Mapping[str, str], expected_prev: str | None, *, first: bool
) -> str | None:
    """The problem with one stored entry given the hash before it (None: a segment's first
    entry, linked at the join), or None when it is sound."""
    names = fields.keys()
    if not REQUIRED_FIELDS <= names or not names <= KNOWN_FIELDS:
        missing = [name for name in ENTRY_FIELDS if name not in fields]
        extra = sorted(set(fields) - KNOWN_FIELDS)
        return f"entry {entry_id}: fields missing {missing} or unexpected {extra} (altered)"
    # An unsigned entry is checked in full; a signed one's details are what was signed when
    # its hash matches them as stored and its signature holds (else this runs after all).
    if SIG_FIELD not in fields or not canonical_ts(fields["ts"]):
        problem = canonical_problem(entry_id, fields)
        if problem:
            return problem
    if stored_entry_hash(fields) != fields["hash"]:
        return canonical_problem(entry_id, fields) or (
            f"entry {entry_id}: hash does not match its content (altered)"
        )
    if expected_prev is not None and fields["prev"] != expected_prev:
        if first:
            return (
                f"entry {entry_id}: prev mismatch: the oldest entry does not start the "
                "chain (entries before it deleted)"
            )
        return (
            f"entry {entry_id}: prev mismatch: prev is not the hash of the entry before "
            "it (an entry deleted or reordered)"
        )
    return None


def canonical_ts(ts: str) -> bool:
    """Whether `ts` is stored as the appender stores it: the `repr` of a finite float."""
    try:
        value = float(ts)
    except ValueError:
        return False
    return math.isfinite(value) and repr(value) == ts


def canonical_details(details: str) -> bool:
    """Whether `details` is stored as the appender stores it: canonical JSON of an object."""
    try:
        value = json.loads(details)
        return isinstance(value, dict) and to_canonical_json(value) == details
    except ValueError:
        return False


def canonical_problem(entry_id: str, fields: Mapping[str, str]) -> str | None:
    """The problem when `ts` or `details` are not as the appender stores them, else None."""
    if not (canonical_ts(fields["ts"]) and canonical_details(fields["details"])):
        return f"entry {entry_id}: ts or details are not in canonical form (altered)"
    return None
