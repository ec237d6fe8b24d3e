"""Handlers of the filesystem commands: dir, cd, fileinfo, findfile, getfilehash."""

from __future__ import annotations

import errno
import fnmatch
import grp
import itertools
import os
import pwd
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.commands import filesystem as fs
from tasks.errors import (
    CommandFailedError,
    EndpointPermissionError,
    NotADirectoryError_,
    NotAFileError,
    PathNotFoundError,
)
from worker_agent.context import CommandContext
from worker_agent.find_filters import FileFilter
from worker_agent.hashing import ALGOS, hash_file

_PERMISSION_HINT = "the agent's OS account may not read it; run the agent with more privilege"


def map_oserror(exc: OSError, path: Path | str) -> CommandFailedError:
    """The typed command error for an OSError raised while working on `path`."""
    if exc.errno == errno.ENOENT:
        return PathNotFoundError(f"no such file or directory: {path}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return EndpointPermissionError(f"permission denied: {path}", hint=_PERMISSION_HINT)
    if exc.errno == errno.ENOTDIR:
        return NotADirectoryError_(f"a component of the path is not a directory: {path}")
    return CommandFailedError(f"{path}: {exc.strerror or exc}")


@contextmanager
def oserrors_mapped(path: Path | str) -> Iterator[None]:
    """Turn any OSError raised inside the block into its typed command error."""
    try:
        yield
    except OSError as exc:
        raise map_oserror(exc, path) from exc


def entry_type(mode: int) -> fs.EntryType:
    """The kind of filesystem entry a st_mode describes."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "char"
    if stat.S_ISBLK(mode):
        return "block"
    return "other"


class IdNames:
    """Owner and group names of uids and gids, memoised for one command only.

    Not cached across commands: an intruder adding an account mid-incident must show up.
    """

    def __init__(self) -> None:
        self._names: dict[tuple[str, int], str] = {}

    def user(self, uid: int) -> str:
        """The account name of `uid`, or the number as text when the system does not know it."""
        return self._lookup("user", uid, lambda: pwd.getpwuid(uid).pw_name)

    def group(self, gid: int) -> str:
        """The group name of `gid`, or the number as text when the system does not know it."""
        return self._lookup("group", gid, lambda: grp.getgrgid(gid).gr_name)

    def _lookup(self, kind: str, number: int, find: Callable[[], str]) -> str:
        key = (kind, number)
        if key not in self._names:
            try:
                self._names[key] = find()
            except KeyError:
                self._names[key] = str(number)
        return self._names[key]


def read_link(path: Path | str) -> str | None:
    """A symlink's target as stored (not resolved), or None if it vanished meanwhile."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def read_dir_entry(entry: os.DirEntry[str], names: IdNames) -> fs.DirEntry | None:
    """One listed entry, described without following symlinks; None if it vanished."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    kind = entry_type(st.st_mode)
    return fs.DirEntry(
        name=entry.name,
        type=kind,
        size_bytes=st.st_size,
        mode=stat.filemode(st.st_mode),
        owner=names.user(st.st_uid),
        group=names.group(st.st_gid),
        mtime=st.st_mtime,
        link_target=read_link(entry.path) if kind == "symlink" else None,
    )


def require_directory(path: Path) -> None:
    """Raise the typed error unless `path` (symlinks followed) is a directory."""
    with oserrors_mapped(path):
        st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError_(f"not a directory: {path}", hint="use fileinfo for files")


def run_dir(args: fs.DirArgs, ctx: CommandContext) -> fs.DirResult:
    """List one directory, sorted by name; symlinks are described, never followed."""
    path = ctx.resolve(args.path)
    require_directory(path)
    names = IdNames()
    entries: list[fs.DirEntry] = []
    unreadable = 0
    with oserrors_mapped(path), os.scandir(path) as listing:
        for entry in listing:
            described = read_dir_entry(entry, names)
            if described is None:
                unreadable += 1
            else:
                entries.append(described)
    entries.sort(key=lambda e: e.name)
    return fs.DirResult(path=str(path), entries=entries, unreadable=unreadable)


def run_cd(args: fs.CdArgs, ctx: CommandContext) -> fs.CdResult:
    """The session's new working directory, once it is known to exist and be enterable."""
    path = ctx.resolve(args.path)
    require_directory(path)
    if not os.access(path, os.X_OK):
        raise EndpointPermissionError(f"permission denied: {path}", hint=_PERMISSION_HINT)
    return fs.CdResult(cwd=str(path))


def run_fileinfo(args: fs.FileInfoArgs, ctx: CommandContext) -> fs.FileInfoResult:
    """Stat a path without following it and, for a regular file, hash it in one pass."""
    path = ctx.resolve(args.path)
    with oserrors_mapped(path):
        st = os.lstat(path)
    kind = entry_type(st.st_mode)
    digests: dict[str, str] = {}
    if kind == "file":
        with oserrors_mapped(path):
            digests = hash_file(path, ALGOS, follow_symlinks=False).hexdigests
    names = IdNames()
    return fs.FileInfoResult(
        path=str(path),
        type=kind,
        size_bytes=st.st_size,
        mode=stat.filemode(st.st_mode),
        mode_octal=f"{stat.S_IMODE(st.st_mode):04o}",
        owner=names.user(st.st_uid),
        group=names.group(st.st_gid),
        uid=st.st_uid,
        gid=st.st_gid,
        inode=st.st_ino,
        links=st.st_nlink,
        atime=st.st_atime,
        mtime=st.st_mtime,
        ctime=st.st_ctime,
        link_target=read_link(path) if kind == "symlink" else None,
        sha256=digests.get("sha256"),
        sha1=digests.get("sha1"),
        md5=digests.get("md5"),
    )


def run_findfile(args: fs.FindFileArgs, ctx: CommandContext) -> fs.FindFileResult:
    """Walk from a directory (symlinked dirs not entered) collecting names matching a glob
    that pass the other filters asked for (worker_agent/find_filters.py)."""
    root = ctx.resolve(args.path)
    require_directory(root)
    matches: list[fs.FoundFile] = []
    truncated = False
    walk = DirWalk(root)
    candidates = itertools.chain(
        _root_if_matching(root, args.name), _matching_entries(walk, args.name)
    )
    only = FileFilter.from_args(args)
    for found in candidates:
        if found is None or not only.accepts(found):
            continue
        if len(matches) == args.max:
            truncated = True
            break
        matches.append(found)
    return fs.FindFileResult(
        root=str(root),
        pattern=args.name,
        matches=matches,
        truncated=truncated,
        unreadable=walk.unreadable,
        unread_files=only.unreadable,
        partly_searched=only.partly_searched,
    )


class DirWalk:
    """Depth-first walk of a tree in name order that never follows symlinked directories.

    The root must be readable (its errors are raised typed); deeper directories that cannot be
    read are counted in `unreadable` and skipped.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.unreadable = 0

    def __iter__(self) -> Iterator[os.DirEntry[str]]:
        stack = [str(self.root)]
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as exc:
                if directory == str(self.root):
                    raise map_oserror(exc, directory) from exc
                self.unreadable += 1
                continue
            subdirs: list[str] = []
            for entry in entries:
                yield entry
                if _is_real_dir(entry):
                    subdirs.append(entry.path)
            stack.extend(reversed(subdirs))


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _matching_entries(walk: DirWalk, pattern: str) -> Iterator[fs.FoundFile | None]:
    for entry in walk:
        if not fnmatch.fnmatchcase(entry.name, pattern):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            yield None  # vanished between listing and stat
            continue
        yield fs.FoundFile(
            path=entry.path,
            type=entry_type(st.st_mode),
            size_bytes=st.st_size,
            mtime=st.st_mtime,
        )


def _root_if_matching(root: Path, pattern: str) -> Iterator[fs.FoundFile | None]:
    # Like `find ROOT -name PATTERN`, the root itself is a candidate too.
    if not fnmatch.fnmatchcase(root.name, pattern):
        return
    try:
        st = os.lstat(root)
    except OSError:
        yield None
        return
    yield fs.FoundFile(
        path=str(root), type=entry_type(st.st_mode), size_bytes=st.st_size, mtime=st.st_mtime
    )


def run_getfilehash(args: fs.GetFileHashArgs, ctx: CommandContext) -> fs.GetFileHashResult:
    """Hash a regular file (symlinks followed) in 1 MiB chunks; refuse dirs and special files."""
    path = ctx.resolve(args.path)
    with oserrors_mapped(path):
        st = os.stat(path)
    kind = entry_type(st.st_mode)
    if kind == "dir":
        raise NotAFileError(f"is a directory: {path}", hint="hash the files in it one by one")
    if kind != "file":
        # Stat first: opening a FIFO or a device to find out what it is can block or act on it.
        raise NotAFileError(f"not a regular file ({kind}): {path}", hint="only files are hashed")
    algos = ALGOS if args.algo == "all" else (args.algo,)
    with oserrors_mapped(path):
        digests = hash_file(path, algos, follow_symlinks=True)
    return fs.GetFileHashResult(
        path=str(path),
        size_bytes=digests.size_bytes,
        sha256=digests.hexdigests.get("sha256"),
        sha1=digests.hexdigests.get("sha1"),
        md5=digests.hexdigests.get("md5"),
    )
