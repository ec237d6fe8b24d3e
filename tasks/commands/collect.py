"""Arguments and result of `collect`: a directory or glob as one tar archive in the evidence store.

The archive is a POSIX (pax) tar. Members are named by their absolute path on the endpoint
without the leading `/` (as GNU tar does: `var/log/auth.log`); directories, regular files and
symlinks (recorded, never followed) are archived with their mode, owner and times; special
files (FIFOs, sockets, devices) and what could not be read are skipped and listed. The last
member, `MANIFEST_NAME`, is the JSON manifest: `{"format": "liveresponse-collect/1", "roots",
"members": [...], "skipped": [...]}`, each member as in `CollectMember` below.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tasks.commands.acquisition import SHA256_PATTERN, StoredFileResult
from tasks.commands.base import CommandArgs, CommandResult
from tasks.sizes import parse_size

#: The manifest's member name, last in every archive.
MANIFEST_NAME = "MANIFEST.liveresponse.json"
#: The manifest's `format` value.
COLLECT_FORMAT = "liveresponse-collect/1"


class CollectArgs(CommandArgs):
    #: A file, a directory, or a glob (`/var/log/*.log`) of them.
    path: str = Field(min_length=1)
    #: The largest archive to keep (`50M`); the orchestrator fills in and caps it at its
    #: getfile limit. Past it the collection stops and nothing is kept.
    max_bytes: int | None = Field(default=None, ge=1)

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size_with_unit(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value


class CollectMember(CommandResult):
    #: The member's name in the archive.
    name: str
    #: The path on the endpoint.
    path: str
    type: Literal["file", "dir", "symlink"]
    size_bytes: int = Field(ge=0)
    mode: str  # e.g. "-rw-r--r--"
    mode_octal: str  # e.g. "0644"
    uid: int
    gid: int
    owner: str
    group: str
    atime: float
    mtime: float
    ctime: float
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    link_target: str | None = None


class SkippedEntry(CommandResult):
    path: str
    #: What it is (`fifo`, `socket`, `char`, `block`, ...) or `unreadable`.
    type: str
    reason: str


class CollectResult(StoredFileResult):
    #: The path or glob asked for, made absolute; and what it matched.
    path: str
    roots: list[str]
    members: list[CollectMember]
    skipped: list[SkippedEntry]
