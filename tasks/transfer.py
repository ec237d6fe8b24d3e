"""The file-transfer stream both sides speak: one Redis stream per transfer, entries by kind.

The agent appends `begin` (size), then `chunk` entries (offset, bytes) and finally `end`
(size, sha256, chunk count) or `error` (code, message). A `begin` marked *streamed* (an archive
or a memory dump, whose length is known only at its end) announces the most bytes that may
follow instead of the exact size; its `end` says how many did. The orchestrator reads them in order,
deletes what it consumed (the agent waits while too many are unread) and deletes the stream
when the transfer is over. After `begin`, the agent appends only to a stream that still
exists, so a receiver that gives up stops the sender by deleting the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Kinds of entry, in the order a transfer sends them.
KIND_BEGIN = "begin"
KIND_CHUNK = "chunk"
KIND_END = "end"
KIND_ERROR = "error"
KINDS = (KIND_BEGIN, KIND_CHUNK, KIND_END, KIND_ERROR)

#: Entry field names.
F_KIND = "kind"
F_SIZE = "size_bytes"
F_CHUNK_BYTES = "chunk_bytes"
F_PATH = "path"
F_RESOLVED = "resolved_path"
F_MTIME = "mtime"
F_OFFSET = "offset"
F_DATA = "data"
F_SHA256 = "sha256"
F_CHUNKS = "chunks"
F_CODE = "code"
F_MESSAGE = "message"
F_STREAMED = "streamed"

#: Longest error message an `error` entry carries.
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class TransferEntry:
    """One parsed stream entry; fields not used by its kind keep their defaults."""

    kind: str
    size_bytes: int = 0
    chunk_bytes: int = 0
    path: str = ""
    resolved_path: str = ""
    mtime: float = 0.0
    offset: int = 0
    data: bytes = b""
    sha256: str = ""
    chunks: int = 0
    code: str = ""
    message: str = ""
    #: `begin` only: `size_bytes` is an upper bound, the `end` entry gives the real size.
    streamed: bool = False


def begin_fields(size_bytes: int, chunk_bytes: int, path: str, resolved_path: str | None,
                 mtime: float, *, streamed: bool = False) -> dict[str, str | int | float]:
    """The first entry: which file (path, the file a symlink led to, mtime), how many bytes
    will follow (at most, when `streamed`), in chunks of what size."""
    fields: dict[str, str | int | float] = {
        F_KIND: KIND_BEGIN, F_SIZE: size_bytes, F_CHUNK_BYTES: chunk_bytes, F_PATH: path,
        F_RESOLVED: resolved_path or "", F_MTIME: repr(mtime)}
    if streamed:
        fields[F_STREAMED] = 1
    return fields


def chunk_fields(offset: int, data: bytes | memoryview) -> dict[str, object]:
    """One chunk of content starting at byte `offset` of the file."""
    return {F_KIND: KIND_CHUNK, F_OFFSET: offset, F_DATA: data}


def end_fields(size_bytes: int, sha256: str, chunks: int) -> dict[str, str | int]:
    """The last entry of a transfer that read the whole file."""
    return {F_KIND: KIND_END, F_SIZE: size_bytes, F_SHA256: sha256, F_CHUNKS: chunks}


def error_fields(code: str, message: str) -> dict[str, str]:
    """The last entry of a transfer the agent gave up: why, as an error code and message."""
    return {F_KIND: KIND_ERROR, F_CODE: code[:64], F_MESSAGE: message[:MAX_MESSAGE_CHARS]}


def parse_entry(raw: Mapping[bytes, bytes]) -> TransferEntry:
    """A stream entry as read from Redis (bytes keys and values); ValueError when malformed."""
    fields = {k.decode(errors="replace"): v for k, v in raw.items()}
    kind = fields.get(F_KIND, b"").decode(errors="replace")
    if kind not in KINDS:
        raise ValueError(f"unknown transfer entry kind {kind!r}")
    try:
        if kind == KIND_BEGIN:
            return TransferEntry(kind, size_bytes=_count(fields, F_SIZE),
                                 chunk_bytes=_count(fields, F_CHUNK_BYTES),
                                 path=fields[F_PATH].decode(),
                                 resolved_path=fields[F_RESOLVED].decode(),
                                 mtime=float(fields[F_MTIME]),
                                 streamed=fields.get(F_STREAMED, b"0") == b"1")
        if kind == KIND_CHUNK:
            return TransferEntry(kind, offset=_count(fields, F_OFFSET), data=fields[F_DATA])
        if kind == KIND_END:
            return TransferEntry(kind, size_bytes=_count(fields, F_SIZE),
                                 sha256=fields[F_SHA256].decode(), chunks=_count(fields, F_CHUNKS))
        return TransferEntry(kind, code=fields[F_CODE].decode(errors="replace"),
                             message=fields[F_MESSAGE].decode(errors="replace"))
    except KeyError as exc:
        raise ValueError(f"{kind} entry without its {exc.args[0]!r} field") from None
    except UnicodeDecodeError:
        raise ValueError(f"{kind} entry with a field that is not text") from None


def _count(fields: Mapping[str, bytes], name: str) -> int:
    value = int(fields[name])
    if value < 0:
        raise ValueError(f"negative {name} in a transfer entry")
    return value
