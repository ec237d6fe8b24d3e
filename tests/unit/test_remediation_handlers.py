"""remediate and undo on real files, links and trees: same and cross filesystem, deny list."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import Settings
from tasks.commands.remediation import RemediateArgs, UndoArgs
from tasks.errors import (
    IsADirectoryError_,
    NotAFileError,
    PathExistsError,
    ProtectedPathError,
    QuarantineIntegrityError,
    QuarantineNotFoundError,
)
from tests.privilege import NOBODY, run_as_nobody
from worker_agent.context import CommandContext
from worker_agent.remediation import run_remediate, run_undo
from worker_agent.vault import Vault

#: A tmpfs: a vault there is on another filesystem than the test's files (copy, not rename).
OTHER_FS = Path("/dev/shm")


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def tree_state(root: Path) -> dict[str, tuple]:
    """Everything undo must give back, per entry: type, mode, owner, mtime, bytes or target."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = Path(dirpath) / name if name else Path(dirpath)
            rel = str(path.relative_to(root))
            if rel in state:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content: str = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = sha256sum(path)
            else:
                content = ""
            state[rel] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid,
                          st.st_mtime_ns, content)
    return state


def file_state(path: Path) -> tuple:
    """Stat, then the digest (reading last: a read may move the atime)."""
    st = os.lstat(path)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_atime_ns, st.st_size,
            sha256sum(path))


@pytest.fixture(params=["same-fs", "cross-fs"])
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CommandContext]:
    """An agent context whose vault is next to the files, or on another filesystem."""
    if request.param == "same-fs":
        vault = tmp_path / "data" / "quarantine"
    else:
        vault = OTHER_FS / f"lr-vault-{os.urandom(4).hex()}"
    settings = Settings(data_dir=tmp_path / "data", quarantine_dir=vault,
                        remediate_deny_paths=[*Settings().remediate_deny_paths,
                                              str(tmp_path / "outer" / "denied")])
    try:
        yield CommandContext(device_id="test-device", settings=settings, command_id="c-1")
    finally:
        subprocess.run(["rm", "-rf", str(vault)], check=True)


@pytest.fixture
def suspect(tmp_path: Path) -> Path:
    """A file with an unusual owner, mode and times."""
    path = tmp_path / "work" / "invoice2025.exe"
    path.parent.mkdir()
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o4751)  # set-uid survives only if chown comes before chmod on restore
    return path


def set_times(path: Path) -> None:
    """Old, distinct atime and mtime (after any read of the file by the test itself)."""
    os.utime(path, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321),
             follow_symlinks=False)


def test_remediate_then_undo_gives_back_identical_bytes_and_metadata(
        ctx: CommandContext, suspect: Path) -> None:
    before = file_state(suspect)
    set_times(suspect)
    before = (*before[:3], 1_500_000_000_987_654_321, 1_600_000_000_123_456_789, *before[5:])
    taken = run_remediate(RemediateArgs(path=str(suspect)), ctx)
    assert not os.path.lexists(suspect)
    assert taken.sha256 == before[-1] and taken.size_bytes == before[5]
    assert taken.method == ("copy" if str(ctx.settings.quarantine_path()).startswith(
        str(OTHER_FS)) else "rename")
    restored = run_undo(UndoArgs(qid=taken.qid), ctx)
    assert restored.restored and restored.owner_restored
    assert file_state(suspect) == before
    assert not (ctx.settings.quarantine_path() / taken.qid).exists()


def test_the_vault_is_private_and_keeps_the_content(ctx: CommandContext, suspect: Path) -> None:
    digest = sha256sum(suspect)
    taken = run_remediate(RemediateArgs(path=str(suspect)), ctx)
    vault = ctx.settings.quarantine_path()
    item = vault / taken.qid
    assert stat.S_IMODE(os.stat(vault).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(item).st_mode) == 0o700
    assert sha256sum(item / "content") == digest
    record = Vault(vault).read_record(taken.qid)
    assert record.path == str(suspect) and record.entries[0].uid == NOBODY

    def peek() -> str:
        try:
            (item / "content").read_bytes()
        except PermissionError:
            return "denied"
        return "read"

    assert run_as_nobody(peek) == "denied"


def test_a_directory_needs_recursive(ctx: CommandContext, tmp_path: Path) -> None:
    tree = tmp_path / "drop"
    tree.mkdir()
    (tree / "a").write_text("a")
    with pytest.raises(IsADirectoryError_, match="--recursive"):
        run_remediate(RemediateArgs(path=str(tree)), ctx)
    assert (tree / "a").read_text() == "a"


def test_a_tree_comes_back_identical(ctx: CommandContext, tmp_path: Path) -> None:
    tree = tmp_path / "drop"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "payload.sh").write_bytes(b"#!/bin/sh\necho evil\n")
    (tree / "sub" / "data.bin").write_bytes(os.urandom(2 * 1024 * 1024 + 3))
    (tree / "sub" / "deeper" / "empty").write_bytes(b"")
    (tree / "sub" / "link").symlink_to("../payload.sh")
    (tree / "dangling").symlink_to("/nonexistent/target")
    os.chmod(tree / "payload.sh", 0o755)
    os.chown(tree / "sub" / "data.bin", NOBODY, NOBODY)
    os.chmod(tree / "sub", 0o750)
    for i, path in enumerate([tree / "sub" / "deeper", tree / "sub", tree]):
        os.utime(path, ns=(1_400_000_000_000_000_000 + i, 1_300_000_000_000_000_007 + i))
    before = tree_state(tree)
    taken = run_remediate(RemediateArgs(path=str(tree), recursive=True), ctx)
    assert taken.type == "dir" and taken.files == len(before)
    assert not os.path.lexists(tree)
    run_undo(UndoArgs(qid=taken.qid), ctx)
    assert tree_state(tree) == before


def test_a_symlink_is_quarantined_as_the_link_never_its_target(
        ctx: CommandContext, tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("untouched")
    link = tmp_path / "autostart.desktop"
    link.symlink_to(target)
    taken = run_remediate(RemediateArgs(path=str(link)), ctx)
    assert taken.type == "symlink" and not os.path.lexists(link)
    assert target.read_text() == "untouched"
    run_undo(UndoArgs(qid=taken.qid), ctx)
    assert os.readlink(link) == str(target)


def test_a_fifo_is_refused_and_stays(ctx: CommandContext, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotAFileError, match="fifo"):
        run_remediate(RemediateArgs(path=str(fifo)), ctx)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_usr_bin_env_is_refused_by_default(tmp_path: Path) -> None:
    ctx = CommandContext(device_id="d", settings=Settings(data_dir=tmp_path))
    with pytest.raises(ProtectedPathError, match="--force"):
        run_remediate(RemediateArgs(path="/usr/bin/env"), ctx)
    assert os.path.exists("/usr/bin/env")


@pytest.mark.parametrize("how", ["direct", "dotdot", "symlinked-parent", "holding-tree"])
def test_deny_listed_paths_are_refused_however_named(ctx: CommandContext, tmp_path: Path,
                                                     how: str) -> None:
    denied = tmp_path / "outer" / "denied"
    denied.mkdir(parents=True)
    (denied / "tool").write_text("system")
    (tmp_path / "alias").symlink_to(denied)
    path, recursive = {
        "direct": (str(denied / "tool"), False),
        "dotdot": (f"{tmp_path}/other/../outer/denied/tool", False),
        "symlinked-parent": (str(tmp_path / "alias" / "tool"), False),
        "holding-tree": (str(tmp_path / "outer"), True),
    }[how]
    with pytest.raises(ProtectedPathError, match="denied"):
        run_remediate(RemediateArgs(path=path, recursive=recursive), ctx)
    assert (denied / "tool").read_text() == "system"


def test_force_goes_past_the_deny_list(ctx: CommandContext, tmp_path: Path) -> None:
    (tmp_path / "outer" / "denied").mkdir(parents=True)
    tool = tmp_path / "outer" / "denied" / "tool"
    tool.write_text("system")
    taken = run_remediate(RemediateArgs(path=str(tool), force=True), ctx)
    assert taken.forced and not tool.exists()
    run_undo(UndoArgs(qid=taken.qid), ctx)
    assert tool.read_text() == "system"


def test_the_vault_cannot_quarantine_itself_even_forced(ctx: CommandContext) -> None:
    vault = ctx.settings.quarantine_path()
    Vault(vault).ensure()
    for path in (vault, vault.parent):
        with pytest.raises(ProtectedPathError, match="vault"):
            run_remediate(RemediateArgs(path=str(path), recursive=True, force=True), ctx)
    assert vault.is_dir()


def test_undo_of_unknown_or_malformed_qid_is_a_clear_error(ctx: CommandContext) -> None:
    with pytest.raises(QuarantineNotFoundError, match="no quarantined item Q0123456789ab"):
        run_undo(UndoArgs(qid="Q0123456789ab"), ctx)
    with pytest.raises(ValidationError):
        UndoArgs(qid="../../etc")


def test_undo_onto_a_taken_path_is_refused_and_keeps_the_item(
        ctx: CommandContext, suspect: Path) -> None:
    digest = sha256sum(suspect)
    taken = run_remediate(RemediateArgs(path=str(suspect)), ctx)
    suspect.write_text("the intruder put it back")
    with pytest.raises(PathExistsError, match="stays in the vault"):
        run_undo(UndoArgs(qid=taken.qid), ctx)
    assert suspect.read_text() == "the intruder put it back"
    assert sha256sum(ctx.settings.quarantine_path() / taken.qid / "content") == digest
    run_undo(UndoArgs(qid=taken.qid, overwrite=True), ctx)
    assert sha256sum(suspect) == digest


def test_undo_refuses_a_tampered_item_and_keeps_it(ctx: CommandContext, suspect: Path) -> None:
    taken = run_remediate(RemediateArgs(path=str(suspect)), ctx)
    content = ctx.settings.quarantine_path() / taken.qid / "content"
    with open(content, "r+b") as f:
        f.write(b"X")
    with pytest.raises(QuarantineIntegrityError, match="sha256"):
        run_undo(UndoArgs(qid=taken.qid), ctx)
    assert not os.path.lexists(suspect)
    assert content.exists()
    assert hashlib.sha256(content.read_bytes()).hexdigest() != taken.sha256


def test_undo_refuses_a_parent_swapped_for_a_symlink(ctx: CommandContext, suspect: Path,
                                                     tmp_path: Path) -> None:
    taken = run_remediate(RemediateArgs(path=str(suspect)), ctx)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    suspect.parent.rmdir()
    suspect.parent.symlink_to(elsewhere)
    with pytest.raises(PathExistsError, match="symlink"):
        run_undo(UndoArgs(qid=taken.qid), ctx)
    assert list(elsewhere.iterdir()) == []
    assert (ctx.settings.quarantine_path() / taken.qid / "content").exists()
