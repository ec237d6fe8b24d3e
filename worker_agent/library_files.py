"""Library files on the agent: read from the broker, checked against the signed sha256 and
size, and `put` onto the endpoint only once they verified."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from tasks.commands.library import LibraryFileArgs, PutArgs, PutResult
from tasks.errors import (
    CommandFailedError,
    EndpointPermissionError,
    LibraryIntegrityError,
    PathExistsError,
    PathNotFoundError,
)
from worker_agent.context import CommandContext

#: Prefix of the temporary file a put writes next to its destination.
TEMP_PREFIX = ".lr-put-"


def signed_blob(args: LibraryFileArgs) -> tuple[str, int]:
    """The sha256 and size the orchestrator signed; refused when they are missing."""
    if args.sha256 is None or args.size_bytes is None:
        raise LibraryIntegrityError(
            f"{args.name}: the command carries no signed sha256 and size of the library file; "
            "refused (only the orchestrator's library resolves them)")
    return args.sha256, args.size_bytes


def fetch_verified(args: LibraryFileArgs, ctx: CommandContext, fd: int) -> str:
    """Write the library file's content to `fd`, one chunk at a time, and return its sha256;
    LibraryIntegrityError when a chunk is missing or the size or sha256 is not the signed one.

    The caller discards what was written when this raises.
    """
    sha256, size = signed_blob(args)
    hasher = hashlib.sha256()
    written = 0
    n = 0
    while written < size:
        chunk = ctx.client.get(ctx.keys.library_blob(sha256, n))
        if chunk is None:
            raise LibraryIntegrityError(
                f"{args.name}: the library content {sha256[:12]}… is incomplete on the broker "
                f"(chunk {n} missing; removed from the library meanwhile?): nothing written or run",
                hint="check `lr library list` and add the file again")
        written += len(chunk)
        if written > size:
            break
        hasher.update(chunk)
        _write_all(fd, chunk)
        n += 1
    if written != size:
        raise LibraryIntegrityError(
            f"{args.name}: the library content on the broker is not {size} bytes as signed; "
            "refused, nothing written or run")
    actual = hasher.hexdigest()
    if actual != sha256:
        raise LibraryIntegrityError(
            f"{args.name}: the content read from the broker has sha256 {actual}, the signed one "
            f"is {sha256}: tampered with or corrupted; refused, nothing written or run",
            hint="an admin should remove and add the library file again")
    return actual


def run_put(args: PutArgs, ctx: CommandContext) -> PutResult:
    """Write a library file to DEST (default: cwd/NAME; into DEST when it is a directory).

    Verified in a 0600 temporary file next to DEST, then moved into place: DEST never holds a
    partial or unverified file; an existing DEST is refused without --overwrite; a symlink at
    DEST is replaced, never followed.
    """
    signed_blob(args)
    dest = ctx.resolve(args.dest) if args.dest else ctx.resolve(args.name)
    before = _lstat(dest)
    if before is not None and stat.S_ISDIR(before.st_mode):
        dest = dest / args.name
        before = _lstat(dest)
    if before is not None:
        if stat.S_ISDIR(before.st_mode):
            raise PathExistsError(f"{dest} is a directory; put writes files only")
        if not args.overwrite:
            raise PathExistsError(f"{dest} already exists; left unchanged",
                                  hint="add --overwrite to replace it")
    parent = dest.parent
    if not parent.is_dir():
        raise PathNotFoundError(f"no directory {parent} to put {args.name} in")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=parent)
    except OSError as exc:
        raise _write_error(exc, parent) from None
    tmp = Path(tmp_name)
    try:
        try:
            sha256 = fetch_verified(args, ctx, fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        replaced = _move_into_place(tmp, dest, overwrite=args.overwrite)
    except OSError as exc:
        _discard(tmp)
        raise _write_error(exc, parent) from None
    except BaseException:
        _discard(tmp)
        raise
    return PutResult(name=args.name, path=str(dest), size_bytes=args.size_bytes or 0,
                     sha256=sha256, overwritten=replaced)


def _move_into_place(tmp: Path, dest: Path, *, overwrite: bool) -> bool:
    """Rename `tmp` to `dest`; without `overwrite` only if `dest` is still free. Whether a
    file was replaced."""
    if overwrite:
        existed = _lstat(dest) is not None
        try:
            os.replace(tmp, dest)
        except IsADirectoryError:
            raise PathExistsError(f"{dest} is a directory; put writes files only") from None
        return existed
    try:
        # A hard link fails if the name was taken meanwhile: no check-then-write race.
        os.link(tmp, dest, follow_symlinks=False)
    except FileExistsError:
        raise PathExistsError(f"{dest} already exists; left unchanged",
                              hint="add --overwrite to replace it") from None
    except OSError:
        # A filesystem without hard links: check, then rename.
        if _lstat(dest) is not None:
            raise PathExistsError(f"{dest} already exists; left unchanged",
                                  hint="add --overwrite to replace it") from None
        os.replace(tmp, dest)
        return False
    tmp.unlink()
    return False


def _discard(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def _write_error(exc: OSError, parent: Path) -> CommandFailedError:
    if isinstance(exc, PermissionError):
        return EndpointPermissionError(f"the agent may not write in {parent}")
    return CommandFailedError(f"cannot write in {parent}: {exc.strerror or exc}")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise PathNotFoundError(f"{path}: a parent is not a directory") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
