"""Arguments and result of `getfile`: one file copied off the endpoint over the broker.

The analyst names a path; the orchestrator adds its size limit before it signs the envelope
(the line cannot set it). The agent fills in what it read; the orchestrator adds where the
verified bytes went in its evidence store.
"""

from __future__ import annotations

from pydantic import Field

from tasks.commands.base import CommandArgs, CommandResult

#: How a sha256 looks on the wire: 64 lowercase hex digits.
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class GetFileArgs(CommandArgs):
    path: str = Field(min_length=1)
    #: Largest file the orchestrator accepts; set by it from its settings, bound by the
    #: signature. The agent refuses anything larger (or larger than its own limit) up front.
    max_bytes: int | None = Field(default=None, ge=0)


class StoredFileResult(CommandResult):
    """What every command that sends a file back carries: the agent fills in the size, sha256
    and chunks it sent; the orchestrator adds where the verified bytes went in its evidence
    store (`evidence_sha256`, equal to `sha256`, its path, and when), once they arrived whole
    and their sha256 matched."""

    size_bytes: int = Field(ge=0)
    #: Computed on the agent while reading; the orchestrator checks it against its own.
    sha256: str = Field(pattern=SHA256_PATTERN)
    chunks: int = Field(ge=0)
    chunk_bytes: int = Field(ge=1)
    evidence_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    evidence_path: str | None = None
    stored_at: float | None = None


class GetFileResult(StoredFileResult):
    #: The path asked for, made absolute against the session's cwd.
    path: str
    #: The file actually read when `path` is a symlink (symlinks are followed, as analysts
    #: expect of a copy); None when `path` itself is the file.
    resolved_path: str | None = None
    #: The file's modification time when the copy started (it may not change during it).
    mtime: float
