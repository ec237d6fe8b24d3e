"""Arguments and results of the filesystem commands: dir, cd, fileinfo, findfile, getfilehash."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.commands.base import CommandArgs, CommandResult

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
    name: str = Field(min_length=1)
    path: str = "."
    max: int = Field(default=100, ge=1, le=10_000)


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


class GetFileHashArgs(CommandArgs):
    path: str
    algo: HashAlgo = "sha256"


class GetFileHashResult(CommandResult):
    path: str
    size_bytes: int
    sha256: str | None = None
    sha1: str | None = None
    md5: str | None = None
