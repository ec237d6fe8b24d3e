"""The one check of the audit chain, entry by entry: hashes, links, signatures and the witness.

The live stream (`AuditLog.verify`), an export (`audit.export_file.verify_file`) and a trim's plan
all feed their entries, oldest first, to one `ChainWalk`; it keeps a few fields, never the
entries, so a walk takes constant memory. A walk can also check one segment of the chain on its own
(`ChainWalk.segment`): `audit.segments` checks a long chain in segments, in parallel, and joins
them at their ends. The live stream is fed in raw `XRANGE` batches (`ChainWalk.step_many`),
whose common entries are checked inline; the checks of one entry alone are `audit.entry`'s.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from orchestrator.audit.entry import (
    canonical_details,
    canonical_problem,
    canonical_ts,
    check_entry,
    order_of,
)
from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.witness import id_order
from tasks.auditchain import (
    AGENT_ACTOR_PREFIX,
    ENTRY_FIELDS,
    GENESIS,
    MAC_FIELD,
    RUN_MEMBER,
    SIG_FIELD,
    EntryMac,
    entry_mac,
    entry_signed_bytes,
    hash_of_stored,
    run_signed_bytes,
)

if TYPE_CHECKING:
    from orchestrator.audit.checkpoint import Checkpoint
    from orchestrator.audit.witness import WitnessMark
    from tasks.signing import Verifier

#: Field names of an orchestrator's entry, in the order it stores them (XRANGE returns them so).
SIGNED_LAYOUT = [*ENTRY_FIELDS, SIG_FIELD, MAC_FIELD]
#: Field names of an agent's entry, in the order it stores them.
UNSIGNED_LAYOUT = list(ENTRY_FIELDS)


class ChainWalk:
    """Fed entries oldest first; names the first one that is not what the orchestrator wrote.

    `keys` check the entries' signatures (an unsigned entry passes only when its actor is an
    agent); `checkpoint` (already verified) is where a trimmed chain starts; `witness` is the
    newest entry this orchestrator wrote, which the chain must still hold. `mac_keys` (key id
    to MAC key: only the orchestrator has them) check an entry's MAC instead of its signature.
    """

    def __init__(
        self,
        keys: Verifier | TrustedKeys | None = None,
        *,
        checkpoint: Checkpoint | None = None,
        witness: WitnessMark | None = None,
        mac_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self.keys = TrustedKeys.of(keys)
        self.mac_keys = dict(mac_keys or {})
        # Each MAC key keyed once, for the common entries' checks.
        self._macs = {key_id: EntryMac(key) for key_id, key in self.mac_keys.items()}
        self.checkpoint = checkpoint
        self.witness = witness
        self.start = checkpoint.anchor if checkpoint else GENESIS
        #: The hash the next entry must link to; None in a segment, before its first entry.
        self.expected_prev: str | None = self.start
        #: The `prev` of the first entry stepped through (where a segment joins the one before).
        self.first_prev: str | None = None
        self.first_id: str | None = None
        self.entries = 0
        self.last_id: str | None = None
        self._last_order = id_order(checkpoint.anchor_id) if checkpoint else (-1, -1)
        self._witness_found = witness is None
        self._witness_order = id_order(witness.id) if witness else (-1, -1)
        # A key once followed by another in the chain signs nothing after it (rotation).
        self._key_in_force: str | None = None
        self._succeeded: set[str] = set()
        #: Entries of a run seen since its start, waiting for the run's last, signed entry.
        self.pending = 0
        self._pending_from: str | None = None
        self._pending_key: str | None = None
        # Whether the chain may start inside a run (it starts at a trim's checkpoint).
        self._open_start = checkpoint is not None
        #: Each key id that took over, in chain order, with the first entry it signed.
        self.key_runs: list[tuple[str, str]] = []

    @classmethod
    def segment(
        cls,
        keys: Verifier | TrustedKeys | None,
        after_id: str | None,
        mac_keys: Mapping[str, bytes] | None = None,
    ) -> ChainWalk:
        """A walk of the entries after `after_id` on their own: the first entry may link to
        any prev (`first_prev`), the key in force and the witness are checked at the join."""
        walk = cls(keys, mac_keys=mac_keys)
        walk.expected_prev = None
        walk.last_id = after_id
        if after_id is not None:
            walk._last_order = id_order(after_id)
        return walk

    def state(self) -> tuple[str | None, set[str]]:
        """The key in force and the keys it succeeded (what `join` carries on)."""
        return self._key_in_force, set(self._succeeded)

    def join(
        self, entries: int, last_id: str, last_hash: str, key_runs: list[tuple[str, str]],
        witness_found: bool,
    ) -> bool:
        """Take on a segment checked elsewhere as if stepped through here; False (and nothing
        taken on) when its key runs break the rule of rotation: re-walk it here instead.

        The caller checked the segment's first entry links to `expected_prev`, and its id
        comes after `last_id`."""
        key_in_force, succeeded = self._key_in_force, set(self._succeeded)
        for key_id, _ in key_runs:
            if key_id in succeeded:
                return False
            if key_id != key_in_force:
                if key_in_force is not None:
                    succeeded.add(key_in_force)
                key_in_force = key_id
        self._key_in_force, self._succeeded = key_in_force, succeeded
        self.key_runs += key_runs
        self.entries += entries
        self.expected_prev, self.last_id = last_hash, last_id
        self._last_order = id_order(last_id)
        self._witness_found = self._witness_found or witness_found
        self._open_start = False
        return True

    def follows(self, entry_id: str) -> bool:
        """Whether `entry_id` comes after the last entry taken on (or the checkpoint's anchor)."""
        return id_order(entry_id) > self._last_order

    @property
    def witness_found(self) -> bool:
        """Whether the witnessed entry was found (or needs no finding)."""
        return self._witness_found

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
        order = order_of(entry_id)
        problem = self._order_problem(entry_id, order) or check_entry(
            entry_id, fields, self.expected_prev, first=self.last_id is None
        )
        if problem is None:
            problem = self._signature_problem(entry_id, fields)
            # Checked in this order before: a details edit is named as one, whatever follows.
            if problem is not None:
                problem = canonical_problem(entry_id, fields) or problem
        if problem is None and not self._witness_found:
            problem = self._witness_problem(entry_id, fields)
        if problem is None:
            if self.first_id is None:
                self.first_id, self.first_prev = entry_id, fields["prev"]
            self.expected_prev = fields["hash"]
            self.last_id = entry_id
            self._last_order = order  # type: ignore[assignment]  # None only with a problem
        return problem

    def step_many(
        self, entries: Iterable[tuple[str, Sequence[str]]]
    ) -> tuple[str, str] | None:
        """`step` through entries as XRANGE returns them, (id, [name, value, ...]); (problem,
        entry id) of the first with a problem, else None.

        The common entry (the orchestrator's, MAC'd by the key in force; an agent's) is
        checked by `_step_common`; any other, and any that fails there, goes through `step`,
        which names its problem."""
        for entry_id, flat in entries:
            if self._step_common(entry_id, flat):
                continue
            it = iter(flat)
            problem = self.step(entry_id, dict(zip(it, it, strict=True)))
            if problem:
                return problem, entry_id
        return None

    def _step_common(self, entry_id: str, flat: Sequence[str]) -> bool:
        """Step a common entry that passes every check `step` makes of it; False (and nothing
        changed) for any other entry.

        Common: fields exactly as an appender lays them out, the id after the last, the prev
        the hash expected, `ts` canonical, the hash of the stored text; then either the key in
        force's signature field with a valid MAC under its key (a run's member, or an entry
        closing exactly the run before it), or an agent's canonical entry outside any run.
        The first entry of a walk, a key that takes over and the witnessed entry's place go
        through `step`. The key in force passed `step` (or a joined segment's same check)."""
        expected_prev = self.expected_prev
        if expected_prev is None or self.first_id is None:
            return False
        order = order_of(entry_id)
        if order is None or order <= self._last_order or (
            not self._witness_found and order >= self._witness_order
        ):
            return False
        names = flat[0::2]
        sig: str | None
        mac: str | None
        if names == SIGNED_LAYOUT:
            ts, actor, action, target, decision, details, prev, entry_hash, sig, mac = flat[1::2]
        elif names == UNSIGNED_LAYOUT:
            ts, actor, action, target, decision, details, prev, entry_hash = flat[1::2]
            sig = mac = None
        else:
            return False
        if prev != expected_prev:
            return False
        if not canonical_ts(ts):
            return False
        if sig is None:
            if self.pending or self._open_start or not actor.startswith(AGENT_ACTOR_PREFIX):
                return False
            if not canonical_details(details):
                return False
        if hash_of_stored(ts, actor, action, target, decision, details, prev) != entry_hash:
            return False
        if sig is not None:
            key_id = self._key_in_force
            sig_key, _, signature = sig.partition(":")
            prepared = self._macs.get(sig_key)
            mac_key_id, colon, mac_hex = mac.partition(":")  # type: ignore[union-attr]
            if sig_key != key_id or prepared is None or mac_key_id != key_id or not colon:
                return False
            signature, _, length_text = signature.partition(":")
            member = signature == RUN_MEMBER and not length_text
            if member:
                if self.pending and self._pending_key != key_id:
                    return False
            else:
                if length_text and not (length_text.isascii() and length_text.isdigit()):
                    return False
                covered = int(length_text) - 1 if length_text else 0
                if (length_text and covered < 1) or self._open_start or self.pending != covered \
                        or (self.pending and self._pending_key != key_id):
                    return False
            if not hmac.compare_digest(mac_hex, prepared.hex(entry_hash, sig)):
                return False
            if not member:
                self.pending = 0
            elif not self.pending:
                self._pending_from, self._pending_key = entry_id, key_id
                self.pending = 1
            else:
                self.pending += 1
        self.entries += 1
        self.expected_prev = entry_hash
        self.last_id = entry_id
        self._last_order = order
        return True

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
        if self.pending:
            return (
                f"entry {self._pending_from}: the chain ends inside a run of {self.pending} "
                "entries that no signature covers (the run's last entry removed, or forged)"
            )
        if not self._witness_found and self.witness is not None:
            return (
                f"the chain ends before entry {self.witness.id} "
                f"({self.witness.hash[:16]}…), the newest this orchestrator wrote: the stream "
                "was deleted, or its newest entries removed"
            )
        return None

    def _order_problem(self, entry_id: str, order: tuple[int, int] | None) -> str | None:
        if order is None:
            return f"entry {entry_id!r}: not a stream id (altered)"
        if order <= self._last_order:
            return f"entry {entry_id}: its id is not after the one before it (ids altered)"
        return None

    def _signature_problem(self, entry_id: str, fields: Mapping[str, str]) -> str | None:
        sig = fields.get(SIG_FIELD)
        if sig is None:
            if fields["actor"].startswith(AGENT_ACTOR_PREFIX):
                # Agents hold no key: their entries are chained, not signed.
                return self._run_problem(entry_id, None, member=False, length=1)
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
        signature, _, length_text = signature.partition(":")
        member = signature == RUN_MEMBER and not length_text
        length = 1
        if length_text:
            if not (length_text.isascii() and length_text.isdigit()) or int(length_text) < 2:
                return f"entry {entry_id}: its signature names no run length (altered)"
            length = int(length_text)
        signed = None if member else (
            entry_signed_bytes(fields["hash"]) if length == 1
            else run_signed_bytes(fields["hash"], length))
        mac_key, mac = self.mac_keys.get(key_id), fields.get(MAC_FIELD)
        if mac_key is not None and mac is not None and mac.startswith(key_id + ":"):
            # The orchestrator's own entries: a MAC only its key could have made.
            valid = hmac.compare_digest(mac[len(key_id) + 1 :],
                                        entry_mac(mac_key, fields["hash"], sig))
            if not valid and signed is not None and verifier.verify_bytes(signed, signature):
                return f"entry {entry_id}: its MAC does not verify, its signature does (altered)"
        else:
            # An entry of a run is signed for by the run's last entry (checked there).
            valid = signed is None or verifier.verify_bytes(signed, signature)
        if not valid:
            return (
                f"entry {entry_id}: signature does not verify: this entry or one before it "
                "was rewritten and the hashes recomputed (rechained), or the signature forged"
            )
        problem = self._run_problem(entry_id, key_id, member=member, length=length)
        if problem or member:
            return problem
        if key_id in self._succeeded:
            return (
                f"entry {entry_id}: signed by key {key_id!r} after key "
                f"{self._key_in_force!r} took over (a retired key signs nothing new)"
            )
        if key_id != self._key_in_force:
            if self._key_in_force is not None:
                self._succeeded.add(self._key_in_force)
            self._key_in_force = key_id
            self.key_runs.append((key_id, entry_id))
        return None

    def _run_problem(
        self, entry_id: str, key_id: str | None, *, member: bool, length: int
    ) -> str | None:
        """Count an entry of a run, or check that an entry signed on its own (`length` 1), an
        agent's (`key_id` None) or a run's last follows exactly the run's `length - 1`."""
        if member:
            if self.pending and self._pending_key != key_id:
                return (
                    f"entry {entry_id}: an entry of a run of key {key_id!r} inside a run of "
                    f"key {self._pending_key!r} (forged)"
                )
            if not self.pending:
                self._pending_from, self._pending_key = entry_id, key_id
            self.pending += 1
            return None
        covered = length - 1
        # After a trim the chain may start inside a run: the signed anchor binds its start.
        fits = self.pending == covered or (self._open_start and self.pending < covered)
        open_start, self._open_start = self._open_start, False
        if self.pending and not fits and key_id is None:
            return (
                f"entry {self._pending_from}: an unfinished run of {self.pending} entries "
                f"before entry {entry_id}: no signature covers them (forged, or the run's last "
                "entry removed)"
            )
        if not fits or (self.pending and self._pending_key != key_id):
            start = "after the checkpoint " if open_start else ""
            return (
                f"entry {entry_id}: its signature covers the {covered} entries of its run "
                f"before it, but {self.pending} {start}precede it (entries added to or "
                "removed from a run)"
            )
        self.pending = 0
        return None

    def _witness_problem(self, entry_id: str, fields: Mapping[str, str]) -> str | None:
        w = self.witness
        if self._witness_found or w is None or id_order(entry_id) < self._witness_order:
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
