"""Streamed file hashing: several digests in one pass, constant memory, never blocking on FIFOs."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import NotAFileError

#: Bytes read per chunk; memory stays at one chunk whatever the file size.
CHUNK_BYTES = 1024 * 1024
#: Every digest the agent computes, in the order results list them.
ALGOS: tuple[str, ...] = ("sha256", "sha1", "md5")

# Reading evidence should not change its atime; O_NOATIME is Linux-only and needs ownership
# (or CAP_FOWNER), so it is tried first and dropped on EPERM.
_O_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass(frozen=True)
class FileDigests:
    """What one streamed read of a file produced."""

    size_bytes: int
    #: Algorithm name → lowercase hex digest.
    hexdigests: dict[str, str]


def hash_file(
    path: Path, algos: Iterable[str] = ALGOS, *, follow_symlinks: bool = True
) -> FileDigests:
    """Hash a regular file with every algorithm in `algos` in a single streamed read.

    Callers check the type with stat before calling; the file is still opened non-blocking and
    checked again with fstat, so a path swapped for a FIFO or device in between never blocks
    or gets read. Raises OSError for the caller to map, NotAFileError for non-regular files.
    """
    hashers = {name: hashlib.new(name, usedforsecurity=False) for name in algos}
    fd = open_nonblocking(path, follow_symlinks=follow_symlinks)
    with open(fd, "rb", buffering=0, closefd=True) as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotAFileError(f"{path} is not a regular file (it changed while being opened)")
        buf = bytearray(CHUNK_BYTES)
        view = memoryview(buf)
        size = 0
        while True:
            count = stream.readinto(buf)
            if count is None:
                # Some kernel files (/proc/kmsg) are "regular" yet wait for data; O_NONBLOCK
                # turns that wait into None here, and a silent partial hash would be a lie.
                raise NotAFileError(f"{path} would block when read (a kernel file?); not hashed")
            if not count:
                break
            chunk = view[:count]
            for hasher in hashers.values():
                hasher.update(chunk)
            size += count
    return FileDigests(size, {name: h.hexdigest() for name, h in hashers.items()})


def open_nonblocking(path: Path, *, follow_symlinks: bool) -> int:
    """A read-only fd of `path` that never blocks on open (FIFOs) and, where allowed, leaves
    its atime alone; O_NOFOLLOW unless `follow_symlinks`."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    if _O_NOATIME:
        try:
            return os.open(path, flags | _O_NOATIME)
        except PermissionError:
            pass
    return os.open(path, flags)
