"""A file, link or directory tree as data: snapshot its metadata, copy, verify and restore it.

The quarantine vault moves items with these; nothing here follows a symlink, and special files
(FIFOs, sockets, devices) are refused before anything moves.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from tasks.commands.remediation import QuarantinedEntry, QuarantinedType
from tasks.errors import NotAFileError, QuarantineIntegrityError
from worker_agent.filesystem import IdNames, entry_type
from worker_agent.hashing import CHUNK_BYTES, hash_file

#: Flags of every read we make: never follow a link, never block on a FIFO swapped in.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
#: Flags of every file we create: never write through something already there.
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def join(root: Path, relpath: str) -> Path:
    """`root` itself for "", else the entry at `relpath` under it."""
    return root / relpath if relpath else root


def snapshot(root: Path, *, recursive: bool) -> list[QuarantinedEntry]:
    """Metadata of `root` (and, when `recursive`, everything under it), parents first.

    Digests are left empty: they are taken from the copy that is kept. Raises NotAFileError on a
    special file anywhere in the tree, OSError for the caller to map.
    """
    names = IdNames()
    entries = [_describe(root, "", os.lstat(root), names)]
    if entries[0].type == "dir" and recursive:
        entries.extend(_describe(Path(p), rel, st, names) for p, rel, st in _walk(root))
    return entries


def _walk(root: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(join(root, rel_dir)) as listing:
            children = sorted(listing, key=lambda e: e.name)
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            st = child.stat(follow_symlinks=False)
            yield child.path, rel, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)


def _describe(path: Path, rel: str, st: os.stat_result, names: IdNames) -> QuarantinedEntry:
    kind = entry_type(st.st_mode)
    if kind not in ("file", "dir", "symlink"):
        raise NotAFileError(f"{path} is a {kind}, not a file, directory or link: nothing moved",
                            hint="special files cannot be quarantined; end what uses them")
    return QuarantinedEntry(
        relpath=rel, type=_as_type(kind), mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
        owner=names.user(st.st_uid), group=names.group(st.st_gid),
        size_bytes=st.st_size if kind == "file" else 0,
        atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
        link_target=os.readlink(path) if kind == "symlink" else None,
    )


def _as_type(kind: str) -> QuarantinedType:
    return "file" if kind == "file" else "dir" if kind == "dir" else "symlink"


def copy_tree(entries: Iterable[QuarantinedEntry], src: Path, dst: Path) -> dict[str, str]:
    """Copy the entries from under `src` to under `dst` (which must not exist), streamed and
    fsynced; return relpath → sha256 of the bytes read from `src`. Directories are created
    private (0700) and get their modes back in `apply_metadata`."""
    digests: dict[str, str] = {}
    for entry in entries:
        target = join(dst, entry.relpath)
        if entry.type == "dir":
            os.mkdir(target, 0o700)
        elif entry.type == "symlink":
            os.symlink(entry.link_target or "", target)
        else:
            digests[entry.relpath] = copy_file(join(src, entry.relpath), target)
    return digests


def copy_file(src: Path, dst: Path) -> str:
    """Copy one regular file in fixed-size chunks, fsync it, and return the source's sha256."""
    digest = hashlib.sha256()
    in_fd = os.open(src, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(in_fd).st_mode):
            raise NotAFileError(f"{src} is no longer a regular file: nothing moved")
        out_fd = os.open(dst, _WRITE_FLAGS, 0o600)
        try:
            buf = bytearray(CHUNK_BYTES)
            view = memoryview(buf)
            while count := os.readv(in_fd, [buf]):
                digest.update(view[:count])
                written = 0
                while written < count:
                    written += os.write(out_fd, view[written:count])
            os.fsync(out_fd)
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)
    return digest.hexdigest()


def hash_tree(entries: Iterable[QuarantinedEntry], root: Path) -> dict[str, str]:
    """relpath → sha256 of each file entry as it is now under `root` (links never followed)."""
    return {e.relpath: hash_file(join(root, e.relpath), ("sha256",), follow_symlinks=False)
            .hexdigests["sha256"] for e in entries if e.type == "file"}


def verify_tree(entries: list[QuarantinedEntry], root: Path, what: str) -> None:
    """Raise QuarantineIntegrityError unless `root` holds exactly the entries: same types, same
    link targets, the recorded sha256 of every file, and nothing else."""
    expected = {e.relpath for e in entries}
    found = {""} | ({rel for _, rel, _ in _walk(root)} if entries[0].type == "dir" else set())
    if found != expected:
        extra = sorted(found - expected)[:3]
        missing = sorted(expected - found)[:3]
        raise QuarantineIntegrityError(
            f"{what} does not hold what was quarantined (extra: {extra}, missing: {missing})")
    for entry in entries:
        path = join(root, entry.relpath)
        kind = entry_type(os.lstat(path).st_mode)
        if kind != entry.type:
            raise QuarantineIntegrityError(f"{what}: {entry.relpath or path.name} is now a {kind}")
        if entry.type == "symlink" and os.readlink(path) != entry.link_target:
            raise QuarantineIntegrityError(f"{what}: link {entry.relpath or path.name} changed")
    actual = hash_tree(entries, root)
    for entry in entries:
        if entry.type == "file" and actual[entry.relpath] != entry.sha256:
            raise QuarantineIntegrityError(
                f"{what}: sha256 of {entry.relpath or root.name} is {actual[entry.relpath]}, "
                f"{entry.sha256} was recorded", hint="the item was altered; it is kept as is")


def apply_metadata(entries: list[QuarantinedEntry], root: Path, *, owner: bool) -> None:
    """Give every entry under `root` its recorded mode and times (and owner, when `owner`).

    Deepest entries first, so setting a directory's mtime is the last change inside it.
    """
    for entry in sorted(entries, key=lambda e: e.relpath.count("/") + bool(e.relpath),
                        reverse=True):
        path = join(root, entry.relpath)
        if owner:
            # chown before chmod: changing the owner clears set-user-id and set-group-id bits.
            os.lchown(path, entry.uid, entry.gid)
        if entry.type != "symlink":
            os.chmod(path, stat.S_IMODE(entry.mode))
        os.utime(path, ns=(entry.atime_ns, entry.mtime_ns), follow_symlinks=False)


def remove(path: Path) -> None:
    """Remove a file, link or whole directory tree at `path` (links are not followed)."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def remove_entries(entries: list[QuarantinedEntry], root: Path) -> None:
    """Remove exactly the entries under `root`, children before parents; anything that appeared
    since the snapshot makes its directory's rmdir fail (OSError) rather than be lost."""
    for entry in reversed(entries):
        path = join(root, entry.relpath)
        if entry.type == "dir":
            os.rmdir(path)
        else:
            os.unlink(path)


def fsync_dir(path: Path) -> None:
    """Make a rename or new entry in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_cross_device(exc: OSError) -> bool:
    """Whether a rename failed only because source and target are on different filesystems."""
    return exc.errno == errno.EXDEV


def tree_digest(entries: Iterable[QuarantinedEntry]) -> str:
    """One sha256 for a tree: over `relpath NUL type NUL sha256-or-link-target LF`, by relpath."""
    digest = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.relpath):
        value = e.sha256 or e.link_target or ""
        digest.update(f"{e.relpath}\0{e.type}\0{value}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
