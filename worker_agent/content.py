"""Handlers of the content commands: cat, head, tail, strings, hexdump.

Each opens the file once, non-blocking and refusing anything but a regular file (a FIFO or a
device is never read), and hashes the bytes as it reads them from the start: where the file is
at most WHOLE_READ_MAX_BYTES it is read to its end, and the result carries its sha256 too.
Files of password hashes are refused: their bytes would land in the result.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from tasks.commands import content as ct
from tasks.errors import FileLockedError, NotAFileError, SecretFileError
from worker_agent.context import CommandContext
from worker_agent.filesystem import entry_type, oserrors_mapped
from worker_agent.hashing import CHUNK_BYTES, open_nonblocking

#: Files read to their end (and hashed whole) at most this large; larger ones are read only as
#: far as the command needs (hexdump and tail seek), and carry no file_sha256.
WHOLE_READ_MAX_BYTES = 256 * 1024 * 1024
#: Room a content result keeps for its other fields, within the agent's output limit.
RESULT_ROOM_BYTES = 4096
#: The smallest cap, whatever the output limit says.
MIN_CAP_BYTES = 1024
#: Files whose bytes never leave the agent through a content command (password hashes).
SECRET_FILES = frozenset({"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-"})


class Reader:
    """One regular file opened for reading, hashed as it is read from its start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with oserrors_mapped(path):
            st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise NotAFileError(f"is a directory: {path}", hint="list it with dir")
        if not stat.S_ISREG(st.st_mode):
            # Stat first: opening a FIFO or a device to find out what it is can block or act.
            raise NotAFileError(f"not a regular file ({entry_type(st.st_mode)}): {path}",
                                hint="only regular files are read")
        with oserrors_mapped(path):
            self.fd = open_nonblocking(path, follow_symlinks=True)
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(self.fd)
            raise NotAFileError(f"{path} is not a regular file (it changed while being opened)")
        # What was opened, not what the path names now: a link swapped in between is caught.
        if is_secret_file(st):
            os.close(self.fd)
            raise SecretFileError(
                f"{path} holds password hashes: its content is not shown",
                hint="use 'users' for each account's password status; "
                     "getfile copies the file into the evidence store")
        self.size = st.st_size
        #: Read from the start, every byte so far hashed; False once the agent seeked.
        self.hashing = True
        self.position = 0
        self._hasher = hashlib.sha256()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_exc: object) -> None:
        os.close(self.fd)

    @property
    def whole(self) -> bool:
        """Whether this file is read to its end (and hashed whole)."""
        return self.size <= WHOLE_READ_MAX_BYTES

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The file's bytes from the current position to its end, chunk by chunk."""
        while True:
            with oserrors_mapped(self.path):
                try:
                    chunk = os.read(self.fd, size)
                except BlockingIOError:
                    raise FileLockedError(f"{self.path} would block when read (a kernel file?)",
                                          hint="it cannot be read without waiting") from None
            if not chunk:
                return
            self.position += len(chunk)
            if self.hashing:
                self._hasher.update(chunk)
                # A file that grows past the limit while read (a log) is not hashed whole.
                if self.position > WHOLE_READ_MAX_BYTES:
                    self.hashing = False
            yield chunk

    def seek(self, offset: int) -> None:
        """Jump to `offset`; the file is no longer hashed."""
        with oserrors_mapped(self.path):
            os.lseek(self.fd, offset, os.SEEK_SET)
        self.position = offset
        self.hashing = False

    def finish(self) -> str | None:
        """The sha256 of the whole file when it is read to its end (what remains is read)."""
        if not (self.hashing and self.whole):
            return None
        for _chunk in self.chunks():
            if not self.hashing:
                return None
        return self._hasher.hexdigest() if self.hashing else None


FileBytesT = TypeVar("FileBytesT", bound=ct.FileBytes)


def is_secret_file(st: os.stat_result) -> bool:
    """Whether `st` is the inode of one of SECRET_FILES (hard links included)."""
    for secret in SECRET_FILES:
        try:
            other = os.stat(secret)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def byte_cap(ctx: CommandContext) -> int:
    """Most bytes a content result carries: CONTENT_MAX_BYTES, less where the agent's output
    limit is lower (base64 makes bytes 4/3 larger; the rest of the result needs room too)."""
    return max(min(ct.CONTENT_MAX_BYTES, (ctx.output_max_bytes - RESULT_ROOM_BYTES) * 3 // 4),
               MIN_CAP_BYTES)


def file_bytes(model: type[FileBytesT], reader: Reader, data: bytes, offset: int, *, cut: bool,
               file_sha256: str | None, **extra: Any) -> FileBytesT:
    """A content result of `model`: `data` carried binary-safe with its digests."""
    encoding, text = ct.carry(data)
    return model(path=str(reader.path), size_bytes=reader.size, offset=offset,
                 encoding=encoding, data=text, returned_bytes=len(data),
                 sha256=hashlib.sha256(data).hexdigest(), cut=cut, file_sha256=file_sha256,
                 **extra)


def run_cat(args: ct.CatArgs, ctx: CommandContext) -> ct.CatResult:
    """The first `max_bytes` bytes of a file."""
    most = min(args.max_bytes, byte_cap(ctx))
    with Reader(ctx.resolve(args.path)) as reader:
        kept = bytearray()
        for chunk in reader.chunks():
            kept += chunk
            if len(kept) > most:
                break
        file_sha256 = reader.finish()
    cut = len(kept) > most or reader.size > most
    return file_bytes(ct.CatResult, reader, bytes(kept[:most]), 0, cut=cut,
                      file_sha256=file_sha256)


def run_head(args: ct.HeadArgs, ctx: CommandContext) -> ct.HeadResult:
    """The first `lines` lines of a file, at most byte_cap() bytes of them."""
    most = byte_cap(ctx)
    with Reader(ctx.resolve(args.path)) as reader:
        kept = bytearray()
        for chunk in reader.chunks():
            kept += chunk
            if kept.count(b"\n") >= args.lines or len(kept) > most:
                break
        file_sha256 = reader.finish()
    end = _after_line(kept, args.lines)
    data = bytes(kept[:min(end, most)])
    count = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    cut = end > most
    return file_bytes(ct.HeadResult, reader, data, 0, cut=cut, file_sha256=file_sha256,
                      lines=count)


def run_tail(args: ct.TailArgs, ctx: CommandContext) -> ct.TailResult:
    """The last `lines` lines of a file, at most byte_cap() bytes of them."""
    most = byte_cap(ctx)
    window = most + 1
    with Reader(ctx.resolve(args.path)) as reader:
        if not reader.whole:
            reader.seek(max(reader.size - window, 0))
        kept = bytearray()
        for chunk in reader.chunks():
            kept += chunk
            if len(kept) > 2 * window:
                del kept[:-window]
        file_sha256 = reader.finish()
        end_offset = reader.position
    tail = bytes(kept[-window:])
    start = _start_of_last_lines(tail, args.lines)
    # Fewer lines than asked for in the window: the whole file when it fits the window, else
    # the lines go past the cap and only its last bytes are returned.
    cut = start is None and len(tail) >= window
    if start is None:
        start = len(tail) - most if cut else 0
    data = tail[start:]
    count = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return file_bytes(ct.TailResult, reader, data, end_offset - len(data), cut=cut,
                      file_sha256=file_sha256, lines=count)


def run_hexdump(args: ct.HexdumpArgs, ctx: CommandContext) -> ct.HexdumpResult:
    """`length` bytes of a file from `offset`, for the CLI to draw as a hex dump."""
    length = min(args.length, byte_cap(ctx))
    end = args.offset + length
    with Reader(ctx.resolve(args.path)) as reader:
        if not reader.whole:
            reader.seek(args.offset)
        kept = bytearray()
        for chunk in reader.chunks():
            start = reader.position - len(chunk)
            lo, hi = max(args.offset - start, 0), min(end - start, len(chunk))
            if lo < hi:
                kept += chunk[lo:hi]
            if reader.position >= end:
                break
        file_sha256 = reader.finish()
    cut = len(kept) < length or length < args.length
    return file_bytes(ct.HexdumpResult, reader, bytes(kept), args.offset, cut=cut,
                      file_sha256=file_sha256)


def run_strings(args: ct.StringsArgs, ctx: CommandContext) -> ct.StringsResult:
    """Runs of at least `min` printable ASCII characters (and tabs), as `strings -a` finds."""
    with Reader(ctx.resolve(args.path)) as reader:
        scan = StringScan(args.min)
        scanned = 0
        for chunk in reader.chunks():
            part = chunk[:WHOLE_READ_MAX_BYTES - scanned]
            scan.feed(part)
            scanned += len(part)
            if scanned >= WHOLE_READ_MAX_BYTES:
                break
        scan.close()
        file_sha256 = reader.finish()
    listing = b"".join(s.text.encode("ascii") + b"\n" for s in scan.found)
    return ct.StringsResult(path=str(reader.path), size_bytes=reader.size, min=args.min,
                            strings=scan.found, scanned_bytes=scanned,
                            file_sha256=file_sha256, sha256=hashlib.sha256(listing).hexdigest(),
                            cut=scan.cut or scanned < max(reader.size, reader.position))


class StringScan:
    """Printable runs across chunk boundaries, kept until their text passes the byte cap."""

    def __init__(self, shortest: int) -> None:
        self.pattern = re.compile(rb"[\x20-\x7e\t]{%d,}" % shortest)
        self.shortest = shortest
        self.found: list[ct.FoundString] = []
        self.cut = False
        self._size = 0
        self._carry = b""
        self._carry_at = 0

    def feed(self, chunk: bytes) -> None:
        """Scan `chunk`; a run touching its end waits for the next one."""
        data = self._carry + chunk
        base = self._carry_at
        tail_start = len(data)
        for match in self.pattern.finditer(data):
            if match.end() == len(data):
                tail_start = match.start()
                break
            self._keep(base + match.start(), match.group())
        else:
            # A short run at the end may grow into a long one in the next chunk.
            tail_start = _printable_tail(data)
        if len(data) - tail_start > ct.CONTENT_MAX_BYTES:
            self._keep(base + tail_start, data[tail_start:])
            tail_start = len(data)
        self._carry, self._carry_at = data[tail_start:], base + tail_start

    def close(self) -> None:
        """The run at the end of the file, if it is long enough."""
        if len(self._carry) >= self.shortest:
            self._keep(self._carry_at, self._carry)
        self._carry = b""

    def _keep(self, offset: int, run: bytes) -> None:
        if self.cut:
            return
        self._size += len(run) + 1
        if self._size > ct.CONTENT_MAX_BYTES:
            self.cut = True
            return
        self.found.append(ct.FoundString(offset=offset, text=run.decode("ascii")))


#: The bytes `strings` counts as text: printable ASCII and the tab.
_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09}


def _printable_tail(data: bytes) -> int:
    """Where the run of printable bytes that ends `data` starts."""
    at = len(data)
    while at > 0 and data[at - 1] in _PRINTABLE:
        at -= 1
    return at


def _after_line(data: bytearray, lines: int) -> int:
    """Where the `lines`-th line of `data` ends (after its newline), or the end of `data`."""
    at = -1
    for _ in range(lines):
        at = data.find(b"\n", at + 1)
        if at == -1:
            return len(data)
    return at + 1


def _start_of_last_lines(data: bytes, lines: int) -> int | None:
    """Where the last `lines` lines of `data` start; None when `data` holds fewer."""
    at = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        at = data.rfind(b"\n", 0, at)
        if at == -1:
            return None
    return at + 1
