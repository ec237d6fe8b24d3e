"""Handler of `getfile`: stream one regular file to the orchestrator over the broker.

Everything that can be refused is refused before the first byte moves: a missing path, a
directory, a device, FIFO or socket (checked with stat, then opened non-blocking so nothing can
wait on it), an unreadable file, one over the size limit. Symlinks are followed to the regular
file they name (the result says which file was read). While it streams, the file must stay the
same file with the same size and mtime; if it vanishes, is replaced, shrinks, grows or is
written to, the transfer fails and the orchestrator keeps nothing.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.commands.acquisition import GetFileArgs, GetFileResult
from tasks.errors import (
    FileChangedError,
    FileLockedError,
    FileTooLargeError,
    NotAFileError,
    PathNotFoundError,
)
from tasks.transfer import begin_fields, chunk_fields, end_fields
from worker_agent.context import CommandContext
from worker_agent.filesystem import entry_type, map_oserror, oserrors_mapped, read_link
from worker_agent.hashing import open_nonblocking
from worker_agent.stream_sender import StreamSender
from worker_agent.stream_writer import failures_told, transfer_sender

#: read() errors that mean "not now": a mandatory lock, or a file that waits for data.
_BUSY_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY, errno.EDEADLK})


@dataclass(frozen=True)
class SourceFile:
    """An open regular file and what it was when opened."""

    path: Path
    resolved: Path | None
    stream: io.FileIO
    st: os.stat_result


def run_getfile(args: GetFileArgs, ctx: CommandContext) -> GetFileResult:
    """Send the file at `args.path` in fixed-size chunks into the command's transfer stream."""
    path = ctx.resolve(args.path)
    limit = ctx.settings.getfile_max_bytes
    if args.max_bytes is not None:
        limit = min(limit, args.max_bytes)
    chunk_bytes = ctx.settings.transfer_chunk_bytes
    with open_source(path, limit) as source:
        sender = transfer_sender(ctx)
        with failures_told(sender, "getfile"):
            sender.begin(begin_fields(source.st.st_size, chunk_bytes, str(path),
                                      str(source.resolved) if source.resolved else None,
                                      source.st.st_mtime))
            sha256, chunks = send_content(source, sender, chunk_bytes)
    return GetFileResult(
        path=str(path), resolved_path=str(source.resolved) if source.resolved else None,
        size_bytes=source.st.st_size, mtime=source.st.st_mtime, sha256=sha256,
        chunks=chunks, chunk_bytes=chunk_bytes,
    )


@contextmanager
def open_source(path: Path, max_bytes: int) -> Iterator[SourceFile]:
    """Open the regular file at `path` (symlinks followed) for reading, or refuse it."""
    with oserrors_mapped(path):
        lst = os.lstat(path)
    resolved: Path | None = None
    st = lst
    if stat.S_ISLNK(lst.st_mode):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise PathNotFoundError(
                f"{path} is a symlink to {read_link(path)!r}, which does not exist") from None
        except OSError as exc:
            raise map_oserror(exc, path) from exc
        resolved = Path(os.path.realpath(path))
    _check_kind(path, st)
    _check_size(path, st.st_size, max_bytes)
    # Opened non-blocking: a path swapped for a FIFO since the stat cannot make us wait.
    with oserrors_mapped(path):
        fd = open_nonblocking(path, follow_symlinks=True)
    with open(fd, "rb", buffering=0, closefd=True) as stream:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            raise FileChangedError(f"{path} was replaced while it was being opened",
                                   hint="run getfile again")
        _check_kind(path, opened)
        _check_size(path, opened.st_size, max_bytes)
        yield SourceFile(path=path, resolved=resolved, stream=stream, st=opened)


def send_content(source: SourceFile, sender: StreamSender, chunk_bytes: int) -> tuple[str, int]:
    """Read, hash and send the file in chunks; return (sha256, chunks sent).

    One buffer is reused for every chunk, so memory stays constant in the file size.
    """
    hasher = hashlib.sha256()
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    size = source.st.st_size
    offset = 0
    chunks = 0
    while True:
        count = _fill(source, view)
        if count == 0:
            break
        if offset + count > size:
            raise _changed(source, f"grew past the {size} bytes it had when the copy started",
                           hint="files in /proc or /sys report no size; copy those otherwise")
        hasher.update(view[:count])
        sender.send(chunk_fields(offset, view[:count]))
        offset += count
        chunks += 1
        check_unchanged(source)
    if offset != size:
        raise _changed(source, f"shrank to {offset} of its {size} bytes")
    check_unchanged(source)
    sender.send(end_fields(size, hasher.hexdigest(), chunks))
    return hasher.hexdigest(), chunks


def check_unchanged(source: SourceFile) -> None:
    """Raise FileChangedError unless the open file and its path are as when the copy started."""
    now = os.fstat(source.stream.fileno())
    if now.st_size != source.st.st_size:
        raise _changed(source, f"changed size from {source.st.st_size} to {now.st_size} bytes")
    if now.st_mtime_ns != source.st.st_mtime_ns:
        raise _changed(source, "was modified")
    try:
        at_path = os.stat(source.path)
    except FileNotFoundError:
        raise _changed(source, "was deleted") from None
    except OSError as exc:
        raise _changed(source, f"could not be checked ({exc.strerror})") from exc
    if (at_path.st_dev, at_path.st_ino) != (source.st.st_dev, source.st.st_ino):
        raise _changed(source, "was replaced by another file")


def _fill(source: SourceFile, view: memoryview) -> int:
    """Read until `view` is full or the file ends; the number of bytes read."""
    filled = 0
    while filled < len(view):
        try:
            count = source.stream.readinto(view[filled:])
        except OSError as exc:
            if exc.errno in _BUSY_ERRNOS:
                raise _locked(source) from exc
            raise map_oserror(exc, source.path) from exc
        if count is None:  # O_NONBLOCK turned a wait (a lock, a kernel file) into None
            raise _locked(source)
        if count == 0:
            break
        filled += count
    return filled


def _check_kind(path: Path, st: os.stat_result) -> None:
    kind = entry_type(st.st_mode)
    if kind == "dir":
        raise NotAFileError(f"is a directory: {path}",
                            hint="getfile copies one file; list the directory with dir")
    if kind != "file":
        raise NotAFileError(f"not a regular file ({kind}): {path}",
                            hint="devices, FIFOs and sockets have no fixed content to copy")


def _check_size(path: Path, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise FileTooLargeError(
            f"{path} is {size} bytes, over the getfile limit of {max_bytes} bytes",
            hint="raise LR_GETFILE_MAX_BYTES on the orchestrator (and the agent), "
                 "or collect the file another way")


def _changed(source: SourceFile, what: str, hint: str | None = None) -> FileChangedError:
    return FileChangedError(f"{source.path} {what} during transfer; nothing was kept",
                            hint=hint or "run getfile again once the file is at rest")


def _locked(source: SourceFile) -> FileLockedError:
    return FileLockedError(f"{source.path} is locked or busy: reading it would block",
                           hint="a process holds a lock on it, or it is a kernel file; "
                                "try again later")
