"""Handlers of the remediation commands: remediate (quarantine a path) and undo (put it back).

A quarantined item leaves its path for the agent's private vault (worker_agent/vault.py): moved
with rename on the same filesystem, else copied in chunks, fsynced, verified by sha256 and only
then removed. A symlink at PATH is quarantined as the link itself, never followed. Paths on the
deny list, and the agent's own files, are refused unless --force (which the orchestrator grants
only to admins); the vault itself, or a tree holding it, is refused even then.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

import config
import tasks
import worker_agent
from config.settings import Settings
from tasks import clock
from tasks.commands.remediation import (
    QuarantinedEntry,
    RemediateArgs,
    RemediateResult,
    UndoArgs,
    UndoResult,
)
from tasks.errors import (
    IsADirectoryError_,
    PathExistsError,
    PathNotFoundError,
    ProtectedPathError,
    QuarantineIncompleteError,
    QuarantineIntegrityError,
)
from worker_agent import filetree
from worker_agent.context import CommandContext
from worker_agent.filesystem import map_oserror, oserrors_mapped
from worker_agent.vault import Vault, VaultRecord


def resolve_target(ctx: CommandContext, raw: str) -> Path:
    """The path as the session names it, with its parent resolved (the item itself is not):
    `/tmp/../usr/bin/x` or a symlinked parent cannot hide where the item really is."""
    path = ctx.resolve(raw)
    # realpath raises where a component may not be read (e.g. another process's /proc root).
    with oserrors_mapped(path):
        if path.name in ("", ".", ".."):
            return Path(os.path.realpath(path))
        return Path(os.path.realpath(path.parent)) / path.name


def protected_paths(settings: Settings) -> list[str]:
    """Every path remediate refuses without --force: the deny list and the agent's own files."""
    own = [sys.prefix, sys.exec_prefix, settings.data_dir, settings.quarantine_path()]
    own += [Path(pkg.__file__ or "").parent for pkg in (worker_agent, tasks, config)]
    listed = [p for p in settings.remediate_deny_paths if os.path.isabs(p)]
    return [*listed, *(str(p) for p in own)]


def find_protection(target: Path, settings: Settings) -> str | None:
    """The protected path that `target` is, lies under, or holds; None when it is free."""
    for entry in protected_paths(settings):
        normal, real = os.path.normpath(entry), os.path.realpath(entry)
        for variant in dict.fromkeys((normal, real)):
            if _overlaps(target, Path(variant)):
                return entry if variant == normal else f"{entry} (= {real})"
    return None


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or b in a.parents or a in b.parents


def run_remediate(args: RemediateArgs, ctx: CommandContext) -> RemediateResult:
    """Move PATH into the vault and return its quarantine id and what was recorded."""
    target = resolve_target(ctx, args.path)
    vault = Vault(ctx.settings.quarantine_path())
    vault_real = Path(os.path.realpath(vault.root))
    if _overlaps(target, vault_real):
        raise ProtectedPathError(f"{target} is or holds the quarantine vault; nothing moved",
                                 hint="the vault cannot quarantine itself, even with --force")
    guard = find_protection(target, ctx.settings)
    if guard is not None and not args.force:
        raise ProtectedPathError(
            f"{target} is protected by {guard} (system-critical, or the agent's own files); "
            "nothing moved without --force", hint="an admin may go past the deny list with --force")
    with oserrors_mapped(target):
        entries = filetree.snapshot(target, recursive=args.recursive)
    if entries[0].type == "dir" and not args.recursive:
        raise IsADirectoryError_(f"{target} is a directory and --recursive was not given; "
                                 "nothing moved",
                                 hint="add --recursive to quarantine the whole tree as one item")
    qid, _ = vault.new_item()
    try:
        record = _take(target, vault, qid, entries, ctx, forced=guard is not None)
        vault.write_record(record)
    except QuarantineIncompleteError:
        raise  # the verified copy stays in the vault under its id, as the error says
    except BaseException:
        # Nothing half-done stays behind: the item is back where it was, or never left.
        if os.path.lexists(vault.content(qid)) and not os.path.lexists(target):
            os.rename(vault.content(qid), target)
        vault.discard(qid)
        raise
    return RemediateResult.model_validate(
        record.model_dump(include=set(RemediateResult.model_fields)))


def _take(target: Path, vault: Vault, qid: str, entries: list[QuarantinedEntry],
          ctx: CommandContext, *, forced: bool) -> VaultRecord:
    content = vault.content(qid)
    method: Literal["rename", "copy"]
    try:
        os.rename(target, content)
        method = "rename"
    except OSError as exc:
        if not filetree.is_cross_device(exc):
            raise map_oserror(exc, target) from exc
        method = "copy"
    if method == "rename":
        filetree.fsync_dir(target.parent)
        # What the vault holds now is the truth (anything changed in between is in it too).
        entries = filetree.snapshot(content, recursive=True)
        entries = _with_digests(entries, filetree.hash_tree(entries, content))
    else:
        with oserrors_mapped(target):
            entries = _with_digests(entries, filetree.copy_tree(entries, target, content))
        filetree.verify_tree(entries, content, "the copy in the vault")
    filetree.fsync_dir(content.parent)
    record = VaultRecord(
        qid=qid, path=str(target), type=entries[0].type,
        size_bytes=sum(e.size_bytes for e in entries if e.type == "file"),
        sha256=_item_digest(entries), files=len(entries), method=method, forced=forced,
        quarantined_at=clock.now(), command_id=ctx.command_id, entries=entries)
    if method == "copy":
        _remove_source(target, entries, vault, record)
    return record


def _remove_source(target: Path, entries: list[QuarantinedEntry], vault: Vault,
                   record: VaultRecord) -> None:
    try:
        filetree.remove_entries(entries, target)
    except OSError as exc:
        # The verified copy is complete: keep it, and say what is left at the path.
        vault.write_record(record)
        raise QuarantineIncompleteError(
            f"{target} was copied to the vault as {record.qid}, but removing it failed: "
            f"{exc.strerror or exc}", hint="remove what is left at the path by hand") from exc


def _with_digests(entries: list[QuarantinedEntry],
                  digests: dict[str, str]) -> list[QuarantinedEntry]:
    return [e.model_copy(update={"sha256": digests[e.relpath]}) if e.type == "file" else e
            for e in entries]


def _item_digest(entries: list[QuarantinedEntry]) -> str | None:
    top = entries[0]
    if top.type == "file":
        return top.sha256
    return filetree.tree_digest(entries) if top.type == "dir" else None


def run_undo(args: UndoArgs, ctx: CommandContext) -> UndoResult:
    """Put a quarantined item back exactly where it was; the vault item goes once verified."""
    vault = Vault(ctx.settings.quarantine_path())
    record = vault.read_record(args.qid)
    content = vault.content(args.qid)
    if not os.path.lexists(content):
        raise QuarantineIntegrityError(f"the vault item {args.qid} has lost its content")
    dest = Path(record.path)
    _check_free(dest, record, args.overwrite)
    staging = dest.parent / f".lr-undo-{args.qid}"
    with oserrors_mapped(staging):
        if os.path.lexists(staging):
            filetree.remove(staging)  # left by an undo that was stopped midway
        try:
            os.rename(content, staging)
            renamed = True
        except OSError as exc:
            if not filetree.is_cross_device(exc):
                raise
            renamed = False
            filetree.copy_tree(record.entries, content, staging)
    owner = getattr(os, "geteuid", lambda: -1)() == 0  # only root may give files away
    try:
        filetree.verify_tree(record.entries, staging, f"quarantined item {args.qid}")
        with oserrors_mapped(dest):
            filetree.apply_metadata(record.entries, staging, owner=owner)
            _place(staging, dest, record, args.overwrite)
            filetree.fsync_dir(dest.parent)
    except BaseException:
        if os.path.lexists(staging):
            if renamed:
                os.rename(staging, content)
            else:
                filetree.remove(staging)
        raise
    vault.discard(args.qid)
    st = os.lstat(dest)
    top = record.entries[0]
    return UndoResult(qid=args.qid, path=str(dest), type=record.type, sha256=record.sha256,
                      files=record.files, restored=True,
                      owner_restored=(st.st_uid, st.st_gid) == (top.uid, top.gid))


def _check_free(dest: Path, record: VaultRecord, overwrite: bool) -> None:
    if not os.path.isdir(dest.parent):
        raise PathNotFoundError(
            f"the directory {dest.parent} no longer exists; {record.qid} stays in the vault",
            hint="recreate the directory, then undo again")
    if os.path.realpath(dest.parent) != str(dest.parent):
        # The parent was resolved when the item was taken: a link there now points elsewhere.
        raise PathExistsError(
            f"{dest.parent} is now a symlink (to {os.path.realpath(dest.parent)}); nothing "
            f"restored, {record.qid} stays in the vault", hint="remove the link, then undo again")
    if not os.path.lexists(dest):
        return
    if not overwrite:
        raise PathExistsError(
            f"{dest} exists again; nothing restored, {record.qid} stays in the vault",
            hint="move it away first, or add --overwrite to replace a file or link")
    if record.type == "dir" or (dest.is_dir() and not dest.is_symlink()):
        raise PathExistsError(
            f"{dest} is taken, and a directory is never overwritten; "
            f"{record.qid} stays in the vault",
            hint="move what is there away first")


def _place(staging: Path, dest: Path, record: VaultRecord, overwrite: bool) -> None:
    """Move the verified staging copy to `dest` without replacing anything that appeared."""
    if record.type == "dir" or overwrite:
        if os.path.lexists(dest) and (record.type == "dir" or os.path.isdir(dest)):
            raise PathExistsError(f"{dest} was taken while restoring; {record.qid} kept")
        os.replace(staging, dest)
        return
    try:
        # link() never replaces: the no-clobber way to give a file its name.
        os.link(staging, dest, follow_symlinks=False)
    except FileExistsError:
        raise PathExistsError(f"{dest} was taken while restoring; {record.qid} kept") from None
    except OSError:
        if os.path.lexists(dest):
            raise PathExistsError(f"{dest} was taken while restoring; {record.qid} kept") from None
        os.rename(staging, dest)
        return
    os.unlink(staging)

