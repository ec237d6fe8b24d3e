"""Arguments and result of `memdump`, and the layout of the dump file it stores.

A dump is ONE file in the evidence store:

    region bytes || manifest || trailer

- *region bytes*: the content of every mapping of the process that could be read, in address
  order, each as read from `/proc/PID/mem`, one after the other with nothing between them;
- *manifest*: UTF-8 JSON, `{"format": "liveresponse-memdump/1", "pid", "name", "regions":
  [{"start", "end", "perms", "offset", "size_bytes", "path"}], "skipped": [{"start", "end",
  "perms", "path", "reason"}]}` — `start`/`end` are addresses, `offset` is where the region's
  bytes begin in this file, `size_bytes` how many were read (a region that failed part way
  keeps what was read and says why in `reason`);
- *trailer*: 24 bytes, `MEMDUMP_MAGIC` (16 bytes) then the manifest's length as an unsigned
  64-bit big-endian integer.

`read_memdump_manifest` reads it back; `tail -c 24 FILE | head -c 16` shows the magic.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, BinaryIO

from pydantic import Field

from tasks.commands.acquisition import StoredFileResult
from tasks.commands.base import CommandArgs, CommandResult

#: The first 16 bytes of a dump's trailer.
MEMDUMP_MAGIC = b"LRMEMDUMP1\x00\x00\x00\x00\x00\x00"
#: The trailer: magic, then the manifest's length (unsigned 64-bit, big-endian).
TRAILER = struct.Struct(">16sQ")
#: The manifest's `format` value.
MEMDUMP_FORMAT = "liveresponse-memdump/1"


class MemdumpArgs(CommandArgs):
    pid: int = Field(ge=1)
    #: Largest dump the orchestrator accepts; set by it from its settings, bound by the
    #: signature (the line cannot set it).
    max_bytes: int | None = Field(default=None, ge=0)


class MemoryRegion(CommandResult):
    #: Addresses, as hex text (`0x7f…`): they pass 2**53, which JSON numbers may not hold.
    start: str
    end: str
    perms: str
    #: The mapped file or pseudo-name (`[heap]`, `[stack]`), empty for anonymous memory.
    path: str = ""
    #: Where the region's bytes begin in the dump file, and how many were read.
    offset: int = Field(default=0, ge=0)
    size_bytes: int = Field(default=0, ge=0)
    #: Why the region (or its end) could not be read; None for a whole region.
    reason: str | None = None


class MemdumpResult(StoredFileResult):
    pid: int
    name: str
    #: The regions in the dump (in file order) and the readable-looking ones that were not.
    regions: list[MemoryRegion]
    skipped: list[MemoryRegion]


def trailer(manifest_bytes: int) -> bytes:
    """The 24 bytes that end a dump whose manifest is `manifest_bytes` long."""
    return TRAILER.pack(MEMDUMP_MAGIC, manifest_bytes)


def read_memdump_manifest(stream: BinaryIO) -> dict[str, Any]:
    """The manifest of the dump open in `stream` (seekable); ValueError if it is not a dump."""
    end = stream.seek(0, os.SEEK_END)
    if end < TRAILER.size:
        raise ValueError("too short for a memory dump")
    stream.seek(end - TRAILER.size)
    magic, length = TRAILER.unpack(stream.read(TRAILER.size))
    if magic != MEMDUMP_MAGIC or length > end - TRAILER.size:
        raise ValueError("no memory dump trailer at the end of the file")
    stream.seek(end - TRAILER.size - length)
    manifest: dict[str, Any] = json.loads(stream.read(length))
    return manifest
