"""Handler of `collect`: files, directories or a glob as one tar archive streamed into the
evidence store (the archive's layout is in tasks/commands/collect.py).

The tree is listed first (symlinks recorded, never followed; special files and what cannot be
read set aside) and refused up front when its files alone pass the limit. Then the archive is
written straight into the transfer stream, one chunk at a time: nothing is held whole in memory.
Each file is read once, for the archive and its sha256 together. A file that grows meanwhile
is archived at the size it had when opened; one that shrinks, or an archive that passes the
limit anyway, ends the collection and the orchestrator keeps nothing.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks import clock
from tasks.commands.collect import (
    COLLECT_FORMAT,
    MANIFEST_NAME,
    CollectArgs,
    CollectMember,
    CollectResult,
    SkippedEntry,
)
from tasks.errors import FileChangedError, FileTooLargeError, PathNotFoundError
from worker_agent.context import CommandContext
from worker_agent.filesystem import IdNames, entry_type
from worker_agent.hashing import open_nonblocking
from worker_agent.stream_writer import streamed_file
from worker_agent.system_state import require_linux

#: Characters that make a path a glob.
GLOB_CHARS = frozenset("*?[")


def run_collect(args: CollectArgs, ctx: CommandContext) -> CollectResult:
    """Archive what `args.path` names into the command's transfer stream."""
    require_linux("collect")
    pattern = ctx.resolve(args.path)
    roots = expand(pattern)
    limit = ctx.settings.getfile_max_bytes
    if args.max_bytes is not None:
        limit = min(limit, args.max_bytes)
    entries, skipped = plan(roots)
    planned = sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode))
    if planned > limit:
        raise FileTooLargeError(
            f"{pattern} holds {planned} bytes of files, over the limit of {limit} bytes; "
            "nothing was sent", hint="collect a narrower path or glob, or raise --max-bytes "
                                     "(at most LR_GETFILE_MAX_BYTES)")
    names = IdNames()
    members: list[CollectMember] = []
    chunk_bytes = ctx.settings.transfer_chunk_bytes
    with streamed_file(ctx, str(pattern), clock.now(), limit, "collect") as out:
        # Stream mode ("w|"): tarfile writes blocks as it goes and never seeks, so a file
        # object with write() alone is enough (typeshed's protocol asks for more).
        with tarfile.open(fileobj=out, mode="w|",  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT) as tar:
            for path, st in entries:
                member = add_member(tar, path, st, names)
                if isinstance(member, SkippedEntry):
                    skipped.append(member)
                else:
                    members.append(member)
            add_manifest(tar, [str(r) for r in roots], members, skipped)
        sha256 = out.finish()
    return CollectResult(path=str(pattern), roots=[str(r) for r in roots], members=members,
                         skipped=skipped, size_bytes=out.size_bytes, sha256=sha256,
                         chunks=out.chunks, chunk_bytes=chunk_bytes)


def expand(pattern: Path) -> list[Path]:
    """The paths a glob matches (sorted), or the path itself; PathNotFoundError for none."""
    text = str(pattern)
    if GLOB_CHARS & set(text):
        roots = [Path(p) for p in sorted(glob.glob(text))]
        if not roots and os.path.lexists(pattern):
            return [pattern]  # a name that merely holds `[` or `*`, e.g. `report[1].pdf`
        if not roots:
            raise PathNotFoundError(f"nothing matches {text}",
                                    hint="check the pattern with findfile or dir")
        return roots
    if not os.path.lexists(pattern):
        raise PathNotFoundError(f"no such file or directory: {pattern}")
    return [pattern]


def plan(roots: list[Path]) -> tuple[list[tuple[Path, os.stat_result]], list[SkippedEntry]]:
    """Every entry under the roots, depth first in name order (symlinks not followed), and
    what is set aside: special files, what cannot be looked at, directories that cannot be
    listed (archived empty, and listed here with why)."""
    entries: list[tuple[Path, os.stat_result]] = []
    skipped: list[SkippedEntry] = []
    seen: set[str] = set()
    for root in roots:
        for path, st, problem in walk(root):
            kind = entry_type(st.st_mode) if st else "unreadable"
            if problem is not None:
                skipped.append(SkippedEntry(path=str(path), type=kind, reason=problem))
                continue
            if str(path) in seen:
                continue
            seen.add(str(path))
            if kind not in ("file", "dir", "symlink"):
                skipped.append(SkippedEntry(path=str(path), type=kind,
                                            reason="special file: no content to archive"))
            else:
                assert st is not None
                entries.append((path, st))
    return entries, skipped


def walk(root: Path) -> Iterator[tuple[Path, os.stat_result | None, str | None]]:
    """(path, lstat, problem) of `root` and everything under it; a directory that cannot be
    listed is yielded itself and then again with its problem."""
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError as exc:
            yield path, None, exc.strerror or str(exc)
            continue
        yield path, st, None
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            children = sorted(os.listdir(path))
        except OSError as exc:
            yield path, st, f"directory could not be listed: {exc.strerror or exc}"
            continue
        stack.extend(path / name for name in reversed(children))


def add_member(tar: tarfile.TarFile, path: Path, st: os.stat_result,
               names: IdNames) -> CollectMember | SkippedEntry:
    """Archive one entry; the member as the manifest lists it, or why it was skipped."""
    info = tar_info(path, st, names)
    kind = entry_type(st.st_mode)
    sha256 = None
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        tar.addfile(info)
    elif kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        try:
            fd = open_nonblocking(path, follow_symlinks=False)
        except OSError as exc:
            return SkippedEntry(path=str(path), type="unreadable",
                                reason=exc.strerror or str(exc))
        with open(fd, "rb", buffering=0, closefd=True) as stream:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                return SkippedEntry(path=str(path), type="unreadable",
                                    reason="replaced by another file while being listed")
            info = tar_info(path, opened, names)
            reader = HashingReader(stream, path)
            tar.addfile(info, reader)  # type: ignore[arg-type]  # read() is all it uses
            sha256 = reader.hexdigest()
            st = opened
    return CollectMember(
        name=info.name, path=str(path), type="symlink" if kind == "symlink" else
        "dir" if kind == "dir" else "file", size_bytes=info.size,
        mode=stat.filemode(st.st_mode), mode_octal=f"{stat.S_IMODE(st.st_mode):04o}",
        uid=st.st_uid, gid=st.st_gid, owner=info.uname, group=info.gname,
        atime=st.st_atime, mtime=st.st_mtime, ctime=st.st_ctime, sha256=sha256,
        link_target=info.linkname or None)


def tar_info(path: Path, st: os.stat_result, names: IdNames) -> tarfile.TarInfo:
    """A member header from an lstat: name without the leading `/`, mode, owner, times."""
    info = tarfile.TarInfo(str(path).lstrip("/") or ".")
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname, info.gname = names.user(st.st_uid), names.group(st.st_gid)
    info.mtime = st.st_mtime
    info.size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    info.pax_headers = {"atime": repr(st.st_atime), "ctime": repr(st.st_ctime)}
    return info


def add_manifest(tar: tarfile.TarFile, roots: list[str], members: list[CollectMember],
                 skipped: list[SkippedEntry]) -> None:
    """The manifest, as the archive's last member."""
    body: dict[str, Any] = {
        "format": COLLECT_FORMAT, "roots": roots,
        "members": [m.model_dump() for m in members],
        "skipped": [s.model_dump() for s in skipped]}
    data = json.dumps(body, sort_keys=True, indent=1).encode()
    info = tarfile.TarInfo(MANIFEST_NAME)
    info.size, info.mode, info.mtime = len(data), 0o644, clock.now()
    tar.addfile(info, io.BytesIO(data))


class HashingReader:
    """A file's bytes for tarfile, hashed on the way; FileChangedError if it ends early."""

    def __init__(self, stream: io.FileIO, path: Path) -> None:
        self.stream = stream
        self.path = path
        self._hasher = hashlib.sha256()

    def read(self, size: int) -> bytes:
        """Exactly `size` bytes (tarfile asks for no more than the header announced)."""
        data = bytearray()
        while len(data) < size:
            piece = self.stream.read(size - len(data))
            if piece is None:
                raise FileChangedError(f"{self.path} would block when read (a kernel file?); "
                                       "nothing was kept", hint="collect it another way")
            if not piece:
                raise FileChangedError(
                    f"{self.path} shrank while it was archived; nothing was kept",
                    hint="run collect again once the file is at rest")
            data += piece
        self._hasher.update(data)
        return bytes(data)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()
