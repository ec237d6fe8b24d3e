"""Arguments and results of the file content commands: cat, head, tail, strings, hexdump.

Bytes travel binary-safe: as text when they are valid UTF-8, else base64 (`encoding` says
which). Every result carries the sha256 of the bytes it returns and, where the agent read the
whole file, the sha256 of the file, so what the analyst saw can be tied to the evidence.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import Field

from tasks.commands.base import CommandArgs, CommandResult

#: Bytes a content command returns unless told otherwise.
CONTENT_DEFAULT_BYTES = 64 * 1024
#: Most bytes a content command returns (base64 makes them 4/3 larger on the wire, still well
#: under the default LR_OUTPUT_MAX_BYTES of 4 MiB).
CONTENT_MAX_BYTES = 1024 * 1024
#: Lines `head` and `tail` show unless told otherwise, and the most they show.
DEFAULT_LINES = 10
MAX_LINES = 100_000
#: Bytes `hexdump` shows unless told otherwise.
HEXDUMP_DEFAULT_BYTES = 4096
#: Shortest run `strings` reports unless told otherwise, as `strings` does.
STRINGS_DEFAULT_MIN = 4

#: How the bytes of a result are carried in `data`.
Encoding = Literal["utf-8", "base64"]


class CatArgs(CommandArgs):
    path: str = Field(min_length=1)
    max_bytes: int = Field(default=CONTENT_DEFAULT_BYTES, ge=1, le=CONTENT_MAX_BYTES)


class HeadArgs(CommandArgs):
    path: str = Field(min_length=1)
    lines: int = Field(default=DEFAULT_LINES, ge=1, le=MAX_LINES)


class TailArgs(CommandArgs):
    path: str = Field(min_length=1)
    lines: int = Field(default=DEFAULT_LINES, ge=1, le=MAX_LINES)


class StringsArgs(CommandArgs):
    path: str = Field(min_length=1)
    min: int = Field(default=STRINGS_DEFAULT_MIN, ge=1, le=1024)


class HexdumpArgs(CommandArgs):
    path: str = Field(min_length=1)
    offset: int = Field(default=0, ge=0)
    length: int = Field(default=HEXDUMP_DEFAULT_BYTES, ge=1, le=CONTENT_MAX_BYTES)


class FileBytes(CommandResult):
    """A run of a file's bytes, carried binary-safe, with its digests."""

    #: Absolute path as the agent resolved it.
    path: str
    #: The file's size when it was opened.
    size_bytes: int
    #: Where in the file the returned bytes start.
    offset: int
    #: How `data` carries the bytes.
    encoding: Encoding
    data: str
    #: How many bytes `data` carries.
    returned_bytes: int
    #: sha256 of the returned bytes.
    sha256: str
    #: sha256 of the whole file where the agent read it all; None otherwise.
    file_sha256: str | None = None
    #: The bytes stop before what was asked for (the byte cap, or the end of the file).
    cut: bool = False

    def content(self) -> bytes:
        """The returned bytes, decoded from `data`."""
        if self.encoding == "base64":
            return base64.b64decode(self.data)
        return self.data.encode("utf-8")


class CatResult(FileBytes):
    pass


class HeadResult(FileBytes):
    #: Lines returned (the last one may lack its newline).
    lines: int


class TailResult(FileBytes):
    lines: int


class HexdumpResult(FileBytes):
    pass


class FoundString(CommandResult):
    #: Byte offset of the run in the file.
    offset: int
    text: str


class StringsResult(CommandResult):
    path: str
    size_bytes: int
    min: int
    strings: list[FoundString]
    #: Bytes scanned (the whole file unless it is over the agent's whole-read limit).
    scanned_bytes: int
    #: sha256 of the whole file where it was scanned to its end; None otherwise.
    file_sha256: str | None = None
    #: sha256 of the reported strings as `strings` prints them: each text and a newline.
    sha256: str
    #: The list stops before the end of the file (the output cap).
    cut: bool = False


def carry(data: bytes) -> tuple[Encoding, str]:
    """`data` as (encoding, text): UTF-8 when it decodes, base64 otherwise."""
    try:
        return "utf-8", data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(data).decode("ascii")
