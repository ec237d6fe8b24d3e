"""Arguments and results of the remediation commands: remediate (quarantine) and undo."""

from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import Field, field_validator

from tasks.commands.base import CommandArgs, CommandResult

#: A quarantine id: "Q" and 12 lowercase hex digits.
QID_PATTERN = r"^Q[0-9a-f]{12}$"

#: Kernel pseudo-filesystems: their entries are views of processes and devices, not files
#: an attacker left, and cannot be moved into a vault. (/dev/shm holds real files: allowed.)
PSEUDO_FS_ROOTS = ("/proc", "/sys")

#: Kinds of entry the vault keeps (special files are refused).
QuarantinedType = Literal["file", "dir", "symlink"]


class RemediateArgs(CommandArgs):
    path: str = Field(min_length=1)
    #: Quarantine a whole directory tree as one item.
    recursive: bool = False
    #: Go past the deny list of system-critical paths (needs the admin permission).
    force: bool = False

    @field_validator("path")
    @classmethod
    def _not_a_pseudo_file(cls, path: str) -> str:
        normal = posixpath.normpath(path) if path.startswith("/") else ""
        for root in PSEUDO_FS_ROOTS:
            if normal == root or normal.startswith(root + "/"):
                raise ValueError(f"{path} lies in {root}, a kernel pseudo-filesystem: nothing "
                                 "there can be quarantined (remediate the file it points to)")
        return path


class QuarantinedEntry(CommandResult):
    """One entry of a quarantined item, as recorded before it moved (times in ns)."""

    #: Path relative to the quarantined path ("" for the item itself).
    relpath: str
    type: QuarantinedType
    mode: int
    uid: int
    gid: int
    owner: str
    group: str
    size_bytes: int
    atime_ns: int
    mtime_ns: int
    #: Content digest of a file; None for directories and symlinks.
    sha256: str | None = None
    #: What a symlink points to, as stored (never followed).
    link_target: str | None = None


class RemediateResult(CommandResult):
    qid: str
    path: str
    type: QuarantinedType
    #: Bytes of file content quarantined (all files of a tree).
    size_bytes: int
    #: The file's sha256; for a directory, the digest of its manifest (see docs); None for a link.
    sha256: str | None
    #: Entries quarantined (1 for a file or link; every file, dir and link of a tree).
    files: int
    #: "rename" (same filesystem) or "copy" (copied, fsynced, verified, then removed).
    method: Literal["rename", "copy"]
    #: Set when --force took the item past the deny list.
    forced: bool = False


class UndoArgs(CommandArgs):
    qid: str = Field(pattern=QID_PATTERN)
    #: Replace a file or link that now sits at the original path (never a directory).
    overwrite: bool = False


class UndoResult(CommandResult):
    qid: str
    path: str
    type: QuarantinedType
    sha256: str | None
    files: int
    #: True once the content is back, verified, and the vault item removed.
    restored: bool
    #: Whether the owner was set back too (only an agent running as root can).
    owner_restored: bool
