"""The evidence store: files collected from endpoints, on disk by sha256, with custody records.

Objects live at `<evidence_dir>/sha256/<first 2 hex>/<sha256>` (mode 0600, directories 0700),
written through a temp file in `<evidence_dir>/tmp` and linked into place only once verified,
so the store never holds a half-written object. An object collected twice is stored once; each
acquisition keeps its own chain-of-custody record (who, device, path, size, hashes, times) in
Redis next to the audit stream, which holds the same facts hash-chained.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import redis
from pydantic import BaseModel

from tasks.errors import EvidenceNotFoundError, UsageError
from tasks.keys import Keys
from tasks.replies import as_text

#: A sha256 as the store names objects: 64 lowercase hex digits.
SHA256_RE = re.compile(r"[0-9a-f]{64}")
#: Bytes per read when an object is streamed out.
READ_CHUNK_BYTES = 1024 * 1024


class EvidenceRecord(BaseModel):
    """One acquisition: which bytes, from where, by whom, when."""

    sha256: str
    size_bytes: int
    device_id: str
    #: The path asked for, and the file read when it was a symlink.
    path: str
    resolved_path: str | None = None
    #: The file's modification time on the endpoint when it was read.
    mtime: float | None = None
    user: str
    session_id: str
    command_id: str
    #: The sha256 the agent computed while reading (equal to `sha256`, computed on arrival).
    sha256_agent: str
    started_at: float
    stored_at: float


def check_sha256(value: str) -> str:
    """`value` if it is a well-formed sha256 (64 lowercase hex digits), else UsageError."""
    if not SHA256_RE.fullmatch(value):
        raise UsageError(f"malformed sha256 {value[:80]!r}: expected 64 lowercase hex digits",
                         hint="copy it from 'lr evidence list'")
    return value


class EvidenceStore:
    """Content-addressed objects under `root`, custody records under one key prefix."""

    def __init__(self, root: Path, client: redis.Redis, keys: Keys) -> None:
        self.root = root
        self.client = client
        self.keys = keys

    @property
    def temp_dir(self) -> Path:
        """Where transfers in progress are written (same filesystem as the objects)."""
        return self.root / "tmp"

    def object_path(self, sha256: str) -> Path:
        """Where the object with this sha256 is (or would be) stored."""
        check_sha256(sha256)
        return self.root / "sha256" / sha256[:2] / sha256

    def create_temp(self, command_id: str) -> tuple[BinaryIO, Path]:
        """A new private temp file for one transfer: (open for writing, its path)."""
        self._make_dirs(self.temp_dir)
        path = self.temp_dir / f"{command_id}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        return os.fdopen(fd, "wb", buffering=0), path

    def commit(self, temp: Path, sha256: str) -> Path:
        """Move a verified, synced temp file into place; an identical object already stored is
        kept as it is. Returns the object's path; the temp file is gone either way."""
        final = self.object_path(sha256)
        self._make_dirs(final.parent)
        try:
            # link(2) never replaces: of two transfers of the same bytes, the first one stays.
            os.link(temp, final)
        except FileExistsError:
            pass
        finally:
            temp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        return final

    def add(self, record: EvidenceRecord) -> None:
        """Keep one acquisition's custody record."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.evidence_record(record.command_id), record.model_dump_json())
        pipe.zadd(self.keys.evidence, {record.command_id: record.stored_at})
        pipe.sadd(self.keys.evidence_object(record.sha256), record.command_id)
        pipe.execute()

    def acquisitions(self) -> list[EvidenceRecord]:
        """Every acquisition, oldest first."""
        ids = [as_text(i) for i in self.client.zrange(self.keys.evidence, 0, -1)]
        return self._records(ids)

    def find(self, sha256: str) -> list[EvidenceRecord]:
        """The acquisitions that stored this object; EvidenceNotFoundError when none did or its
        file is missing from the store."""
        check_sha256(sha256)
        ids = sorted(as_text(i) for i in self.client.smembers(self.keys.evidence_object(sha256)))
        records = self._records(ids)
        if not records or not self.object_path(sha256).is_file():
            raise EvidenceNotFoundError(f"no evidence with sha256 {sha256}",
                                        hint="list what is stored with 'lr evidence list'")
        return records

    def read(self, sha256: str) -> Iterator[bytes]:
        """The object's bytes in chunks (call `find` first to know it exists)."""
        with open(self.object_path(sha256), "rb") as stream:
            while chunk := stream.read(READ_CHUNK_BYTES):
                yield chunk

    def _make_dirs(self, path: Path) -> None:
        """Create the root, `path` and every directory between them, each 0700."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.root
        for part in path.relative_to(self.root).parts:
            target = target / part
            target.mkdir(mode=0o700, exist_ok=True)

    def _records(self, command_ids: list[str]) -> list[EvidenceRecord]:
        if not command_ids:
            return []
        raw = self.client.mget([self.keys.evidence_record(i) for i in command_ids])
        return [EvidenceRecord.model_validate_json(r) for r in raw if r]


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
