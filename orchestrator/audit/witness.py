"""The witness of the audit chain's head, kept on the orchestrator's own disk, outside Redis.

After each append the orchestrator records the newest entry it wrote (stream id and hash) in
one small file per key prefix. Anyone who can write to Redis can rewrite the stream and its
head, but not this file: `lr audit verify` names a chain that no longer holds the witnessed
entry. The record only moves forward (stream ids compared under an exclusive `flock`), so
several orchestrator processes on one host share it. It is not fsynced: the threat is a
writer to Redis, not a crash of this host (a record torn by one is reported, and replaced by
the next append).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.errors import ConfigurationError

#: The `format` of a witness record.
WITNESS_FORMAT = "liveresponse-audit-witness/1"
#: Every record is written padded to this size, in one write at offset 0.
RECORD_BYTES = 512
#: A key prefix that names its witness file as it is; any other is named by its sha256.
PLAIN_PREFIX = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
#: A Redis stream id.
STREAM_ID = re.compile(r"[0-9]+-[0-9]+")
#: A sha256 hex digest, as the chain's hashes are written.
HASH_HEX = re.compile(r"[0-9a-f]{64}")


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream id as (milliseconds, sequence), which orders ids as Redis does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class WitnessMark:
    """The newest entry an orchestrator wrote, and the newest trim anchor it went past."""

    id: str
    hash: str
    #: Set once the witnessed entry was trimmed away under a valid checkpoint: the chain must
    #: never again start before this anchor (stream id and hash of the newest removed entry).
    anchor_id: str | None = None
    anchor: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The mark as written into the file and an export's header."""
        return {"id": self.id, "hash": self.hash, "anchor_id": self.anchor_id,
                "anchor": self.anchor}

    def merged(self, newer: WitnessMark) -> WitnessMark:
        """The newer of two marks' entries with the later of their anchors: never backwards."""
        entry = newer if id_order(newer.id) > id_order(self.id) else self
        anchors = [m for m in (self, newer) if m.anchor_id is not None]
        anchor = max(anchors, key=lambda m: id_order(m.anchor_id or "0-0"), default=None)
        return WitnessMark(entry.id, entry.hash, anchor.anchor_id if anchor else None,
                           anchor.anchor if anchor else None)


def parse_mark(data: Any) -> WitnessMark:
    """A mark from its decoded JSON; ValueError naming what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    entry_id, entry_hash = data.get("id"), data.get("hash")
    anchor_id, anchor = data.get("anchor_id"), data.get("anchor")
    if not (isinstance(entry_id, str) and STREAM_ID.fullmatch(entry_id)):
        raise ValueError("'id' is not a stream id")
    if not (isinstance(entry_hash, str) and HASH_HEX.fullmatch(entry_hash)):
        raise ValueError("'hash' is not a sha256 hex digest")
    if (anchor_id is None) != (anchor is None):
        raise ValueError("'anchor_id' and 'anchor' are not both set or both null")
    if anchor_id is not None and not (
        isinstance(anchor_id, str) and STREAM_ID.fullmatch(anchor_id)
        and isinstance(anchor, str) and HASH_HEX.fullmatch(anchor)
    ):
        raise ValueError("'anchor_id' or 'anchor' is malformed")
    return WitnessMark(entry_id, entry_hash, anchor_id, anchor)


def witness_file(directory: Path, key_prefix: str) -> Path:
    """The witness file of `key_prefix` in `directory` (one file per prefix)."""
    name = key_prefix if PLAIN_PREFIX.fullmatch(key_prefix) else (
        "sha256-" + hashlib.sha256(key_prefix.encode()).hexdigest()[:32]
    )
    return directory / f"{name}.witness"


class HeadWitness:
    """Reads and advances one witness file; safe across processes and threads of one host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        # flock excludes other open files, not threads sharing this one: they take this lock.
        self._lock = threading.Lock()
        # The bytes last read or written and their mark: most reads find them unchanged.
        self._known: tuple[bytes, WitnessMark | None] = (b"", None)
        self._open()  # at start: an unusable place is a configuration error, not a later one

    @classmethod
    def for_prefix(cls, directory: Path, key_prefix: str) -> HeadWitness:
        """The witness of `key_prefix` under `directory` (created 0700, the file 0600)."""
        return cls(witness_file(directory, key_prefix))

    def read(self) -> WitnessMark | None:
        """The mark recorded, None when nothing was yet; ValueError if it cannot be read."""
        try:
            with self._lock:
                fd = self._open()
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    raw = os.pread(fd, RECORD_BYTES * 2, 0)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            raise ValueError(f"the audit witness {self.path} cannot be read: {exc}") from None
        return self._decode(raw)

    def update(
        self, decide: Callable[[WitnessMark | None], WitnessMark | None]
    ) -> WitnessMark | None:
        """Under an exclusive lock, give `decide` the mark recorded (None when there is none,
        or it is torn) and record the mark it returns (None: leave it); the mark recorded now.
        """
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                try:
                    current = self._decode(os.pread(fd, RECORD_BYTES * 2, 0))
                except ValueError:
                    current = None  # a torn record (crash): the new mark replaces it
                mark = decide(current)
                if mark is None or mark == current:
                    return current
                raw = self._encode(mark)
                os.pwrite(fd, raw, 0)
                self._known = (raw, mark)
                return mark
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def advance(self, mark: WitnessMark) -> WitnessMark | None:
        """Record `mark` unless the file already holds a newer entry (it never moves back)."""
        return self.update(lambda current: current.merged(mark) if current else mark)

    def close(self) -> None:
        """Close the file (the next use opens it again)."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        # A forked child must not share the parent's open file: flock is per open file.
        if self._fd is not None and self._pid == os.getpid():
            return self._fd
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the audit witness {self.path}: {exc.strerror or exc}",
                hint="set LR_AUDIT_WITNESS_DIR to a directory the orchestrator can write",
            ) from None
        self._pid = os.getpid()
        return self._fd

    def _decode(self, raw: bytes) -> WitnessMark | None:
        if raw == self._known[0]:
            return self._known[1]
        text = raw.decode("ascii", errors="replace").strip()
        if not text:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != WITNESS_FORMAT:
                raise ValueError(f"not a {WITNESS_FORMAT} record")
            mark = parse_mark(data)
        except ValueError as exc:
            raise ValueError(f"the audit witness {self.path} is unreadable ({exc})") from None
        self._known = (raw, mark)
        return mark

    @staticmethod
    def _encode(mark: WitnessMark) -> bytes:
        # Formatted by hand, on every append: ids and hashes were checked, so this is JSON.
        anchor_id = f'"{mark.anchor_id}"' if mark.anchor_id is not None else "null"
        anchor = f'"{mark.anchor}"' if mark.anchor is not None else "null"
        data = (f'{{"anchor":{anchor},"anchor_id":{anchor_id},"format":"{WITNESS_FORMAT}",'
                f'"hash":"{mark.hash}","id":"{mark.id}"}}').encode("ascii")
        # Fixed size: one write of the whole record, never a shorter one over a longer.
        return data.ljust(RECORD_BYTES - 1) + b"\n"
