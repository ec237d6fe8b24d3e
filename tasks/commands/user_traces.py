"""Arguments and results of what processes and users carry and leave: env and history."""

from __future__ import annotations

from pydantic import Field

from tasks.commands.acquisition import SHA256_PATTERN
from tasks.commands.base import CommandArgs, CommandResult

#: What a redacted value is replaced with.
REDACTED = "<redacted>"


class EnvArgs(CommandArgs):
    pid: int = Field(ge=1)


class EnvVariable(CommandResult):
    name: str
    #: The value, or REDACTED when the name looks like a secret's (or a URL holds a password).
    value: str
    redacted: bool = False


class EnvResult(CommandResult):
    pid: int
    name: str
    variables: list[EnvVariable]


class HistoryArgs(CommandArgs):
    #: Only this account's histories.
    user: str | None = Field(default=None, min_length=1)
    #: How many of each file's last lines to return.
    max: int = Field(default=50, ge=0, le=10_000)


class HistoryFile(CommandResult):
    #: The account (from passwd) whose home holds the file.
    user: str
    #: bash, zsh, sh or fish.
    shell: str
    #: As seen on the endpoint (relative to the configured root).
    path: str
    #: Who owns the file (it may not be `user`).
    owner: str
    #: Set when the history is a symlink (e.g. to /dev/null, to keep no history): never
    #: followed, no lines read.
    link_target: str | None = None
    size_bytes: int
    mtime: float
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    #: The file's last lines (at most `max`), oldest first, undecodable bytes replaced.
    lines: list[str] = Field(default_factory=list)
    #: How many lines the file holds in all.
    total_lines: int = 0
    #: Why (part of) it could not be read; the file is still listed.
    error: str | None = None


class HistoryResult(CommandResult):
    root: str
    files: list[HistoryFile]
    #: Accounts whose home directory could not be listed.
    unreadable: int = 0
