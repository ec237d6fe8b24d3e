"""A run of audit entries: what one call of the run script sends, and the entries runs
appended, read as models only when a caller reads them."""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from tasks.auditentry import AuditEntry, entry_json, parse_entries


def pack_values(values: list[str]) -> bytes:
    """`values` as the run script reads them: each its length (4 bytes, big-endian), then its
    UTF-8 bytes."""
    if "".join(values).isascii():
        try:
            packed = [""] * (2 * len(values))
            packed[0::2] = map(_length_texts().__getitem__, map(len, values))
            packed[1::2] = values
            # ASCII values between lengths written as Latin-1: one encoding makes the bytes.
            return "".join(packed).encode("latin-1")
        except IndexError:
            pass  # a value of 4096 characters or more
    return b"".join(struct.pack(">I", len(raw)) + raw for raw in (v.encode() for v in values))


@functools.cache
def _length_texts() -> list[str]:
    """A value's length as the run script reads it (4 bytes, big-endian), as Latin-1 text, for
    the lengths most values have (built on first use: agents stage no runs)."""
    return [struct.pack(">I", n).decode("latin-1") for n in range(4096)]


@dataclass(frozen=True)
class Run:
    """One call of the run script: entries chained one onto the next, and what it sends."""

    #: Each entry's body as canonical JSON (what its hash covers), and its hash.
    body_texts: list[str]
    hashes: list[str]
    #: `sig` of the run's last entry, and of the others (None in an agent's chain).
    sig: str | None
    member_sig: str | None
    argv: list[str | bytes]

    def entries(self, first_id: str, start: int = 0) -> list[AuditEntry]:
        """The run's entries from its `start`th on, the run appended from `first_id` on (ids
        `ms-seq`, `ms-seq+1`, ...)."""
        ms, _, seq = first_id.partition("-")
        first, last = int(seq), len(self.hashes) - 1
        sig, member = json.dumps(self.sig), json.dumps(self.member_sig)
        return parse_entries("[" + ",".join([
            entry_json(self.body_texts[i], f"{ms}-{first + i}", self.hashes[i],
                       member if i < last else sig)
            for i in range(start, last + 1)
        ]) + "]")


class AppendedEntries(Sequence[AuditEntry]):
    """The entries runs appended, in order. They are read as models when first used (one
    parse per run): a fleet's commands, whose caller reads none, never pay for them."""

    def __init__(self) -> None:
        #: Each run and the id of its first entry.
        self._runs: list[tuple[Run, str]] = []
        self._read: list[AuditEntry] | None = None

    def add(self, run: Run, first_id: str) -> None:
        """Add the entries `run` appended from the id `first_id` on."""
        self._runs.append((run, first_id))
        self._read = None

    def extend(self, other: AppendedEntries) -> None:
        """Add `other`'s entries after these."""
        self._runs += other._runs
        self._read = None

    def last(self) -> AuditEntry:
        """The newest entry, read on its own."""
        run, first_id = self._runs[-1]
        return run.entries(first_id, start=len(run.hashes) - 1)[0]

    def __len__(self) -> int:
        return sum(len(run.hashes) for run, _ in self._runs)

    @overload
    def __getitem__(self, index: int) -> AuditEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[AuditEntry]: ...

    def __getitem__(self, index: int | slice) -> AuditEntry | list[AuditEntry]:
        return self._entries()[index]

    def __iter__(self) -> Iterator[AuditEntry]:
        return iter(self._entries())

    def _entries(self) -> list[AuditEntry]:
        if self._read is None:
            self._read = [entry for run, first_id in self._runs
                          for entry in run.entries(first_id)]
        return self._read
