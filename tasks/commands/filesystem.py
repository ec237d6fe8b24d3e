"""Arguments and results of the filesystem commands: dir, cd, fileinfo, findfile, getfilehash."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from tasks import clock
from tasks.commands.base import CommandArgs, CommandResult
from tasks.sizes import parse_size_range
from tasks.times import parse_point_in_time

#: Kinds of filesystem entry we report.
EntryType = Literal["file", "dir", "symlink", "fifo", "socket", "char", "block", "other"]
#: Hash algorithms `getfilehash` accepts.
HashAlgo = Literal["sha256", "sha1", "md5", "all"]


class DirArgs(CommandArgs):
    path: str = "."


class DirEntry(CommandResult):
    name: str
    type: EntryType
    size_bytes: int
    mode: str  # e.g. "-rw-r--r--"
    owner: str
    group: str
    mtime: float
    link_target: str | None = None


class DirResult(CommandResult):
    path: str
    entries: list[DirEntry]
    #: Entries that vanished or could not be read while listing.
    unreadable: int = 0


class CdArgs(CommandArgs):
    path: str


class CdResult(CommandResult):
    cwd: str


class FileInfoArgs(CommandArgs):
    path: str


class FileInfoResult(CommandResult):
    path: str
    type: EntryType
    size_bytes: int
    mode: str
    mode_octal: str
    owner: str
    group: str
    uid: int
    gid: int
    inode: int
    links: int
    atime: float
    mtime: float
    ctime: float
    link_target: str | None = None
    sha256: str | None = None
    sha1: str | None = None
    md5: str | None = None


class FindFileArgs(CommandArgs):
    #: A glob on the entry's name; every name when not given.
    name: str = Field(default="*", min_length=1)
    path: str = "."
    max: int = Field(default=100, ge=1, le=10_000)
    #: Only regular files with this sha256.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: Only entries modified after this time: a duration back from now (`2h`, `7d`), an ISO
    #: time (the endpoint's local time unless it names its offset) or `@EPOCH`; the agent
    #: reads it with its own clock and time zone, as `find -newermt` would there.
    newer: str | None = None
    #: Only regular files whose size is in this range (`+10M`, `-4k`, `1k..1M`, `512`).
    size: str | None = None
    #: Only regular files whose first bytes (a bounded read) match this regular expression.
    grep: str | None = Field(default=None, min_length=1)

    @field_validator("sha256", mode="before")
    @classmethod
    def _lowercase_sha256(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("newer")
    @classmethod
    def _point_in_time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_point_in_time(value, clock.now())
        return value

    @field_validator("size")
    @classmethod
    def _size_range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size_range(value)
        return value

    @field_validator("grep")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value.encode())
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value


class FoundFile(CommandResult):
    path: str
    type: EntryType
    size_bytes: int
    mtime: float


class FindFileResult(CommandResult):
    root: str
    pattern: str
    matches: list[FoundFile]
    #: True when the search stopped at `max` matches.
    truncated: bool = False
    #: Directories that could not be read during the walk.
    unreadable: int = 0
    #: Files whose content --sha256 or --grep needed but could not read.
    unread_files: int = 0
    #: Files longer than --grep reads (8 MiB): only their beginning was searched.
    partly_searched: int = 0


class GetFileHashArgs(CommandArgs):
    path: str
    algo: HashAlgo = "sha256"


class GetFileHashResult(CommandResult):
    path: str
    size_bytes: int
    sha256: str | None = None
    sha1: str | None = None
    md5: str | None = None
