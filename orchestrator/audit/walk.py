"""The one check of the audit chain, entry by entry: hashes, links, signatures and the witness.

The live stream (`AuditLog.verify`), an export (`audit.export_file.verify_file`) and a trim's plan
all feed their entries, oldest first, to one `ChainWalk`; it keeps a few fields, never the
entries, so a walk takes constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.witness import STREAM_ID, id_order
from tasks.auditchain import (
    AGENT_ACTOR_PREFIX,
    ENTRY_FIELDS,
    GENESIS,
    SIG_FIELD,
    compute_hash,
    entry_signed_bytes,
    to_canonical_json,
)

if TYPE_CHECKING:
    from orchestrator.audit.checkpoint import Checkpoint
    from orchestrator.audit.witness import WitnessMark
    from tasks.signing import Verifier

#: Every field a stored entry may have.
KNOWN_FIELDS = frozenset((*ENTRY_FIELDS, SIG_FIELD))


class ChainWalk:
    """Fed entries oldest first; names the first one that is not what the orchestrator wrote.

    `keys` check the entries' signatures (an unsigned entry passes only when its actor is an
    agent); `checkpoint` (already verified) is where a trimmed chain starts; `witness` is the
    newest entry this orchestrator wrote, which the chain must still hold.
    """

    def __init__(
        self,
        keys: Verifier | TrustedKeys | None = None,
        *,
        checkpoint: Checkpoint | None = None,
        witness: WitnessMark | None = None,
    ) -> None:
        self.keys = TrustedKeys.of(keys)
        self.checkpoint = checkpoint
        self.witness = witness
        self.start = checkpoint.anchor if checkpoint else GENESIS
        self.expected_prev = self.start
        self.entries = 0
        self.last_id: str | None = None
        self._last_order = id_order(checkpoint.anchor_id) if checkpoint else (-1, -1)
        self._witness_found = witness is None
        # A key once followed by another in the chain signs nothing after it (rotation).
        self._key_in_force: str | None = None
        self._succeeded: set[str] = set()

    def start_problem(self) -> str | None:
        """The problem with where the chain starts, given the witness; call before `step`."""
        w, cp = self.witness, self.checkpoint
        if w is None:
            return None
        if w.anchor_id is not None:
            if cp is None:
                return (
                    f"the chain has no checkpoint, yet this orchestrator saw it trimmed up to "
                    f"entry {w.anchor_id}: the checkpoint was deleted and the chain rebuilt"
                )
            if id_order(cp.anchor_id) < id_order(w.anchor_id) or (
                cp.anchor_id == w.anchor_id and cp.anchor != w.anchor
            ):
                return (
                    f"the checkpoint starts the chain at entry {cp.anchor_id}, but this "
                    f"orchestrator saw it trimmed up to entry {w.anchor_id}: an older "
                    "checkpoint was put back"
                )
        if cp is not None:
            if id_order(w.id) < id_order(cp.anchor_id):
                self._witness_found = True  # trimmed away, under a checkpoint that verified
            elif w.id == cp.anchor_id:
                if w.hash != cp.anchor:
                    return (
                        f"the checkpoint's anchor is not entry {w.id} as this orchestrator "
                        "wrote it (its witness holds another hash)"
                    )
                self._witness_found = True
        return None

    def step(self, entry_id: str, fields: Mapping[str, str]) -> str | None:
        """The problem with the next entry, or None (then it becomes the one to link to)."""
        self.entries += 1
        problem = (
            self._order_problem(entry_id)
            or _check_entry(entry_id, fields, self.expected_prev, first=self.last_id is None)
            or self._signature_problem(entry_id, fields)
            or self._witness_problem(entry_id, fields)
        )
        if problem is None:
            self.expected_prev = fields["hash"]
            self.last_id = entry_id
            self._last_order = id_order(entry_id)
        return problem

    def head_problem(self, head: str | None) -> str | None:
        """The problem with `head` as the newest hash, or with the witnessed entry not found,
        once every entry went through `step`."""
        if self.last_id is None:
            if head and head != self.start:
                return f"no entries, but the head is {head[:16]}…: every entry was deleted"
        elif not head:
            return "head is missing (deleted)"
        elif head != self.expected_prev:
            return (
                f"entry {self.last_id}: the newest entry's hash does not match the head "
                "(newest entries deleted, or the head replaced)"
            )
        if not self._witness_found and self.witness is not None:
            return (
                f"the chain ends before entry {self.witness.id} "
                f"({self.witness.hash[:16]}…), the newest this orchestrator wrote: the stream "
                "was deleted, or its newest entries removed"
            )
        return None

    def _order_problem(self, entry_id: str) -> str | None:
        if not STREAM_ID.fullmatch(entry_id):
            return f"entry {entry_id!r}: not a stream id (altered)"
        if id_order(entry_id) <= self._last_order:
            return f"entry {entry_id}: its id is not after the one before it (ids altered)"
        return None

    def _signature_problem(self, entry_id: str, fields: Mapping[str, str]) -> str | None:
        sig = fields.get(SIG_FIELD)
        if sig is None:
            if fields["actor"].startswith(AGENT_ACTOR_PREFIX):
                return None  # agents hold no key: their entries are chained, not signed
            return (
                f"entry {entry_id}: unsigned, yet its actor {fields['actor']!r} is not an "
                "agent (forged, or its signature removed)"
            )
        if self.keys is None:
            return f"entry {entry_id}: signed, but no public key was given to check it"
        key_id, _, signature = sig.partition(":")
        verifier = self.keys.get(key_id)
        if verifier is None:
            return (
                f"entry {entry_id}: signed by key {key_id!r}, not by a key given "
                f"({self.keys.describe()}): forged, or checked with the wrong public key"
            )
        if not verifier.verify_bytes(entry_signed_bytes(fields["hash"]), signature):
            return (
                f"entry {entry_id}: signature does not verify: this entry or one before it "
                "was rewritten and the hashes recomputed (rechained), or the signature forged"
            )
        if key_id in self._succeeded:
            return (
                f"entry {entry_id}: signed by key {key_id!r} after key "
                f"{self._key_in_force!r} took over (a retired key signs nothing new)"
            )
        if key_id != self._key_in_force:
            if self._key_in_force is not None:
                self._succeeded.add(self._key_in_force)
            self._key_in_force = key_id
        return None

    def _witness_problem(self, entry_id: str, fields: Mapping[str, str]) -> str | None:
        w = self.witness
        if self._witness_found or w is None or id_order(entry_id) < id_order(w.id):
            return None
        if entry_id == w.id and fields["hash"] == w.hash:
            self._witness_found = True
            return None
        if entry_id == w.id:
            return (
                f"entry {entry_id}: not the entry this orchestrator wrote under that id "
                f"(its witness holds {w.hash[:16]}…): rewritten"
            )
        return (
            f"entry {w.id} ({w.hash[:16]}…), which this orchestrator wrote, is missing before "
            f"entry {entry_id} (deleted)"
        )


def _check_entry(
    entry_id: str, fields: Mapping[str, str], expected_prev: str, *, first: bool
) -> str | None:
    """The problem with one stored entry given the hash before it, or None when it is sound."""
    missing = [name for name in ENTRY_FIELDS if name not in fields]
    extra = sorted(set(fields) - KNOWN_FIELDS)
    if missing or extra:
        return f"entry {entry_id}: fields missing {missing} or unexpected {extra} (altered)"
    try:
        ts = float(fields["ts"])
        details = json.loads(fields["details"])
        canonical = (
            repr(ts) == fields["ts"]
            and isinstance(details, dict)
            and to_canonical_json(details) == fields["details"]
        )
    except ValueError:
        canonical = False
    if not canonical:
        return f"entry {entry_id}: ts or details are not in canonical form (altered)"
    body = {
        **{name: fields[name] for name in ENTRY_FIELDS if name != "hash"},
        "ts": ts,
        "details": details,
    }
    if compute_hash(fields["prev"], body) != fields["hash"]:
        return f"entry {entry_id}: hash does not match its content (altered)"
    if fields["prev"] != expected_prev:
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
