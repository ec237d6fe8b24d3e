"""The filesystem handlers on a real temporary tree, checked against coreutils and find."""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tasks.commands.filesystem import (
    CdArgs,
    DirArgs,
    FileInfoArgs,
    FindFileArgs,
    GetFileHashArgs,
)
from tasks.errors import (
    EndpointPermissionError,
    LiveResponseError,
    NotADirectoryError_,
    NotAFileError,
    PathNotFoundError,
)
from tests.privilege import run_as_nobody
from worker_agent.context import CommandContext
from worker_agent.filesystem import (
    IdNames,
    map_oserror,
    read_dir_entry,
    run_cd,
    run_dir,
    run_fileinfo,
    run_findfile,
    run_getfilehash,
)
from worker_agent.hashing import CHUNK_BYTES, hash_file

SECRET = b"invoice 2025\n" * 1000


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{a.txt, b.bin (over one chunk), sub/{c.txt, deep/d.txt}, link -> sub, pipe (FIFO)}."""
    (tmp_path / "a.txt").write_bytes(SECRET)
    (tmp_path / "b.bin").write_bytes(os.urandom(CHUNK_BYTES + 12345))
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "sub" / "c.txt").write_text("c\n")
    (tmp_path / "sub" / "deep" / "d.txt").write_text("d\n")
    (tmp_path / "link").symlink_to("sub")
    os.mkfifo(tmp_path / "pipe")
    os.chmod(tmp_path / "a.txt", 0o640)
    os.chmod(tmp_path / "b.bin", 0o600)
    os.chmod(tmp_path / "sub", 0o755)
    os.chmod(tmp_path / "pipe", 0o644)
    return tmp_path


@pytest.fixture
def ctx(tree: Path) -> CommandContext:
    return CommandContext(device_id="test-device", cwd=str(tree))


def coreutils_digest(binary: str, path: Path) -> str:
    out = subprocess.run([binary, "--", str(path)], capture_output=True, check=True, text=True)
    return out.stdout.split()[0]


def run_without_blocking(fn: Callable[[], object], timeout_s: float = 5.0) -> object:
    """Run fn in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "call blocked"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def test_dir_lists_exactly_the_tree_sorted_with_types_sizes_and_modes(
    tree: Path, ctx: CommandContext
) -> None:
    result = run_dir(DirArgs(path=str(tree)), ctx)
    assert (result.path, result.unreadable) == (str(tree), 0)
    assert {e.name: (e.type, e.size_bytes, e.mode) for e in result.entries} == {
        "a.txt": ("file", len(SECRET), "-rw-r-----"),
        "b.bin": ("file", CHUNK_BYTES + 12345, "-rw-------"),
        "link": ("symlink", len("sub"), "lrwxrwxrwx"),
        "pipe": ("fifo", 0, "prw-r--r--"),
        "sub": ("dir", os.lstat(tree / "sub").st_size, "drwxr-xr-x"),
    }
    assert [e.name for e in result.entries] == ["a.txt", "b.bin", "link", "pipe", "sub"]
    a_txt = result.entries[0]
    assert a_txt.owner == pwd.getpwuid(os.getuid()).pw_name
    assert a_txt.group == grp.getgrgid(os.getgid()).gr_name
    assert a_txt.mtime == os.stat(tree / "a.txt").st_mtime


def test_dir_shows_symlink_without_following_it(ctx: CommandContext) -> None:
    link = {e.name: e for e in run_dir(DirArgs(), ctx).entries}["link"]
    assert link.type == "symlink"
    assert link.link_target == "sub"
    assert link.size_bytes == len("sub")  # lstat size of the link, not the directory's
    assert link.mode.startswith("l")


def test_dir_resolves_relative_paths_against_session_cwd(tree: Path, ctx: CommandContext) -> None:
    result = run_dir(DirArgs(path="sub"), ctx)
    assert result.path == str(tree / "sub")
    assert [e.name for e in result.entries] == ["c.txt", "deep"]
    assert run_dir(DirArgs(path="sub/deep/.."), ctx).path == str(tree / "sub")


def test_dir_through_a_symlinked_directory_lists_its_target(ctx: CommandContext) -> None:
    assert [e.name for e in run_dir(DirArgs(path="link"), ctx).entries] == ["c.txt", "deep"]


def test_dir_entry_that_vanished_after_listing_is_none(tree: Path) -> None:
    with os.scandir(tree) as listing:
        entry = next(e for e in listing if e.name == "a.txt")
    (tree / "a.txt").unlink()
    assert read_dir_entry(entry, IdNames()) is None


def test_dir_errors_are_typed(tree: Path, ctx: CommandContext) -> None:
    with pytest.raises(PathNotFoundError, match="nope"):
        run_dir(DirArgs(path="nope"), ctx)
    with pytest.raises(NotADirectoryError_, match="a.txt"):
        run_dir(DirArgs(path="a.txt"), ctx)
    with pytest.raises(NotADirectoryError_):
        run_dir(DirArgs(path="a.txt/x"), ctx)


def test_unknown_owner_falls_back_to_the_number(tree: Path, ctx: CommandContext) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to an unknown uid needs root")
    unknown = 54321
    os.chown(tree / "a.txt", unknown, unknown)
    entry = {e.name: e for e in run_dir(DirArgs(), ctx).entries}["a.txt"]
    assert (entry.owner, entry.group) == (str(unknown), str(unknown))


def test_cd_returns_resolved_absolute_directory(tree: Path, ctx: CommandContext) -> None:
    assert run_cd(CdArgs(path="sub/deep"), ctx).cwd == str(tree / "sub" / "deep")
    assert run_cd(CdArgs(path=".."), ctx).cwd == str(tree.parent)
    assert run_cd(CdArgs(path=str(tree / "sub")), ctx).cwd == str(tree / "sub")


def test_cd_errors_are_typed(ctx: CommandContext) -> None:
    with pytest.raises(PathNotFoundError):
        run_cd(CdArgs(path="missing"), ctx)
    with pytest.raises(NotADirectoryError_):
        run_cd(CdArgs(path="a.txt"), ctx)
    with pytest.raises(NotADirectoryError_):
        run_cd(CdArgs(path="pipe"), ctx)


def test_oserror_mapping_names_path_and_type() -> None:
    denied = map_oserror(OSError(errno.EACCES, "Permission denied"), "/secret")
    assert isinstance(denied, EndpointPermissionError) and "/secret" in denied.message
    assert denied.hint
    assert isinstance(map_oserror(OSError(errno.EPERM, "x"), "/p"), EndpointPermissionError)
    assert isinstance(map_oserror(OSError(errno.ENOENT, "x"), "/p"), PathNotFoundError)
    assert isinstance(map_oserror(OSError(errno.ENOTDIR, "x"), "/p"), NotADirectoryError_)


@pytest.mark.parametrize("name", ["a.txt", "b.bin"])
def test_fileinfo_hashes_equal_coreutils(tree: Path, ctx: CommandContext, name: str) -> None:
    info = run_fileinfo(FileInfoArgs(path=name), ctx)
    st = os.lstat(tree / name)
    assert info.type == "file"
    assert (info.size_bytes, info.inode, info.uid, info.links) == (
        st.st_size,
        st.st_ino,
        st.st_uid,
        st.st_nlink,
    )
    assert info.sha256 == coreutils_digest("sha256sum", tree / name)
    assert info.sha1 == coreutils_digest("sha1sum", tree / name)
    assert info.md5 == coreutils_digest("md5sum", tree / name)


def test_fileinfo_of_symlink_and_fifo_has_no_hashes(ctx: CommandContext) -> None:
    link = run_fileinfo(FileInfoArgs(path="link"), ctx)
    assert (link.type, link.link_target, link.sha256) == ("symlink", "sub", None)
    fifo = run_without_blocking(lambda: run_fileinfo(FileInfoArgs(path="pipe"), ctx))
    assert fifo.type == "fifo" and fifo.mode_octal == "0644"  # type: ignore[attr-defined]
    assert (fifo.sha256, fifo.sha1, fifo.md5) == (None, None, None)  # type: ignore[attr-defined]


def test_fileinfo_of_missing_path_is_path_not_found(ctx: CommandContext) -> None:
    with pytest.raises(PathNotFoundError, match="ghost"):
        run_fileinfo(FileInfoArgs(path="ghost"), ctx)


@pytest.mark.parametrize("algo", ["sha256", "sha1", "md5"])
def test_getfilehash_equals_coreutils(tree: Path, ctx: CommandContext, algo: str) -> None:
    result = run_getfilehash(GetFileHashArgs(path="b.bin", algo=algo), ctx)  # type: ignore[arg-type]
    assert getattr(result, algo) == coreutils_digest(f"{algo}sum", tree / "b.bin")
    others = {"sha256", "sha1", "md5"} - {algo}
    assert all(getattr(result, other) is None for other in others)
    assert result.size_bytes == CHUNK_BYTES + 12345


def test_getfilehash_all_gives_every_digest(tree: Path, ctx: CommandContext) -> None:
    result = run_getfilehash(GetFileHashArgs(path=str(tree / "a.txt"), algo="all"), ctx)
    assert result.sha256 == coreutils_digest("sha256sum", tree / "a.txt")
    assert result.sha1 == coreutils_digest("sha1sum", tree / "a.txt")
    assert result.md5 == coreutils_digest("md5sum", tree / "a.txt")


def test_getfilehash_of_empty_file(tree: Path, ctx: CommandContext) -> None:
    (tree / "empty").touch()
    result = run_getfilehash(GetFileHashArgs(path="empty"), ctx)
    assert (result.size_bytes, result.sha256) == (0, coreutils_digest("sha256sum", tree / "empty"))


def test_getfilehash_refuses_directories_fifos_and_missing_paths(ctx: CommandContext) -> None:
    with pytest.raises(NotAFileError, match="directory"):
        run_getfilehash(GetFileHashArgs(path="sub"), ctx)
    with pytest.raises(NotAFileError, match="directory"):
        run_getfilehash(GetFileHashArgs(path="link"), ctx)
    with pytest.raises(NotAFileError, match="fifo"):
        run_without_blocking(lambda: run_getfilehash(GetFileHashArgs(path="pipe"), ctx))
    with pytest.raises(PathNotFoundError):
        run_getfilehash(GetFileHashArgs(path="missing.exe"), ctx)


def test_hash_file_never_blocks_on_a_fifo_it_is_handed(tree: Path) -> None:
    # The handlers stat first; this is the second line of defence for a path swapped meanwhile.
    with pytest.raises(NotAFileError):
        run_without_blocking(lambda: hash_file(tree / "pipe"))


def find_paths(root: Path, pattern: str) -> set[str]:
    out = subprocess.run(
        ["find", str(root), "-name", pattern], capture_output=True, check=True, text=True
    )
    return set(out.stdout.splitlines())


@pytest.mark.parametrize("pattern", ["*.txt", "d.txt", "*", "[ab].*", "link", "nomatch*"])
def test_findfile_matches_find(tree: Path, ctx: CommandContext, pattern: str) -> None:
    result = run_findfile(FindFileArgs(name=pattern, path=str(tree), max=1000), ctx)
    assert {m.path for m in result.matches} == find_paths(tree, pattern)
    assert (result.truncated, result.unreadable) == (False, 0)


def test_findfile_does_not_descend_into_symlinked_dirs(ctx: CommandContext) -> None:
    paths = [m.path for m in run_findfile(FindFileArgs(name="c.txt"), ctx).matches]
    assert paths == [str(Path(ctx.cwd or "") / "sub" / "c.txt")]


def test_findfile_relative_path_and_match_details(tree: Path, ctx: CommandContext) -> None:
    result = run_findfile(FindFileArgs(name="*.txt", path="sub"), ctx)
    assert result.root == str(tree / "sub")
    by_path = {m.path: m for m in result.matches}
    assert set(by_path) == find_paths(tree / "sub", "*.txt")
    assert by_path[str(tree / "sub" / "c.txt")].size_bytes == 2
    assert by_path[str(tree / "sub" / "c.txt")].type == "file"


def test_findfile_stops_at_max_and_says_truncated(tree: Path, ctx: CommandContext) -> None:
    everything = find_paths(tree, "*")
    result = run_findfile(FindFileArgs(name="*", max=3), ctx)
    assert len(result.matches) == 3 and result.truncated
    assert {m.path for m in result.matches} <= everything
    exact = run_findfile(FindFileArgs(name="*.txt", max=3), ctx)
    assert len(exact.matches) == 3 and not exact.truncated


def test_findfile_errors_are_typed(ctx: CommandContext) -> None:
    with pytest.raises(PathNotFoundError):
        run_findfile(FindFileArgs(name="*", path="missing"), ctx)
    with pytest.raises(NotADirectoryError_):
        run_findfile(FindFileArgs(name="*", path="a.txt"), ctx)



def probe_permissions(root: Path) -> dict[str, dict[str, Any]]:
    """Each handler's result (or error code and message) on the unreadable parts of `root`."""
    ctx = CommandContext("test-device", cwd=str(root))
    calls: dict[str, Callable[[], BaseModel]] = {
        "cd": lambda: run_cd(CdArgs(path="locked"), ctx),
        "dir": lambda: run_dir(DirArgs(path="locked"), ctx),
        "findfile": lambda: run_findfile(FindFileArgs(name="*.txt"), ctx),
        "getfilehash": lambda: run_getfilehash(GetFileHashArgs(path="secret.txt"), ctx),
    }
    out: dict[str, dict[str, Any]] = {}
    for key, call in calls.items():
        try:
            out[key] = call().model_dump()
        except LiveResponseError as exc:
            out[key] = {"error": exc.code, "message": exc.message}
    return out


def probe_without_privilege(root: Path) -> dict[str, dict[str, Any]]:
    """probe_permissions as an unprivileged account: as root, in a child dropped to nobody."""
    if os.geteuid() != 0:
        return probe_permissions(root)
    return json.loads(run_as_nobody(lambda: json.dumps(probe_permissions(root))))  # type: ignore[no-any-return]


@pytest.fixture
def world_readable_tree() -> Iterator[Path]:
    """A tree `nobody` can reach, holding a locked dir and a root-only file."""
    root = Path(tempfile.mkdtemp(prefix="lr-perm-", dir="/tmp"))
    try:
        root.chmod(0o755)
        (root / "open").mkdir(mode=0o755)
        (root / "open" / "x.txt").write_text("x\n")
        (root / "locked").mkdir()
        (root / "locked" / "hidden.txt").write_text("h\n")
        (root / "locked").chmod(0o000)
        (root / "secret.txt").write_text("s\n")
        (root / "secret.txt").chmod(0o600 if os.geteuid() == 0 else 0o000)
        yield root
    finally:
        (root / "locked").chmod(0o700)
        shutil.rmtree(root)


def test_unreadable_paths_give_permission_errors_and_are_counted(
    world_readable_tree: Path,
) -> None:
    results = probe_without_privilege(world_readable_tree)
    for key in ("cd", "dir", "getfilehash"):
        assert results[key]["error"] == "endpoint_permission_denied", key
    assert "locked" in results["dir"]["message"]
    found = results["findfile"]
    assert found["unreadable"] == 1
    assert {m["path"] for m in found["matches"]} == {
        str(world_readable_tree / "open" / "x.txt"),
        str(world_readable_tree / "secret.txt"),
    }
