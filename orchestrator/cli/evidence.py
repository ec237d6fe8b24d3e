"""`lr evidence list|get`: what the evidence store holds, and a verified copy of one object."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.progress import ProgressBar, wants_bar
from orchestrator.cli.table import MISSING, clean, format_table, format_time
from orchestrator.files.evidence import check_sha256
from tasks.errors import HashMismatchError, UsageError


@click.group("evidence")
def evidence() -> None:
    """Files collected with getfile, stored by sha256 on the orchestrator."""


@evidence.command("list")
@pass_cli
def list_evidence(cli: CliContext) -> None:
    """List every acquisition: sha256, size, device, path, who and when."""
    cli.emit(cli.client.evidence(), render_evidence)


@evidence.command("get")
@click.argument("sha256")
@click.option("--out", "-o", "out", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write the copy.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@pass_cli
def get_evidence(cli: CliContext, sha256: str, out: Path, force: bool) -> None:
    """Copy the evidence object SHA256 to FILE, checking its sha256 while it arrives.

    The copy is written beside FILE and moved into place only once it verified: FILE never
    holds a partial or altered copy.
    """
    sha256 = check_sha256(sha256.strip().lower())
    if out.exists() and not force:
        raise UsageError(f"{out} already exists", hint="pass --force to overwrite it")
    if out.is_dir():
        raise UsageError(f"{out} is a directory", hint="name a file to write")
    try:
        tmp = tempfile.NamedTemporaryFile(dir=out.parent if str(out.parent) else ".",
                                          prefix=f".{out.name}.", suffix=".partial",
                                          delete=False)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}",
                         hint="choose a file you can write") from None
    try:
        with tmp:
            size = _download(cli, sha256, tmp)
        os.replace(tmp.name, out)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    summary = {"sha256": sha256, "size_bytes": size, "file": str(out)}
    cli.emit(summary, lambda s: f"wrote {s['size_bytes']} bytes to {clean(s['file'])} "
                                f"(sha256 {s['sha256']} verified)")


def _download(cli: CliContext, sha256: str, out: Any) -> int:
    """Stream the object into `out`, hashing it; HashMismatchError unless it is SHA256."""
    hasher = hashlib.sha256()
    received = 0
    with cli.client.evidence_download(sha256) as (size, chunks):
        bar = ProgressBar(f"evidence {sha256[:12]}", size or 0,
                          enabled=wants_bar(size, cli.json_output))
        try:
            for chunk in chunks:
                out.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(received)
        finally:
            bar.finish()
    if hasher.hexdigest() != sha256:
        raise HashMismatchError(
            f"the {received} bytes received hash to {hasher.hexdigest()}, not {sha256}; "
            "nothing was written", hint="run it again; if it repeats, check the evidence store")
    return received


def render_evidence(records: list[dict[str, Any]]) -> str:
    """The acquisitions as a table, oldest first."""
    if not records:
        return "(no evidence stored)"
    rows = []
    for r in records:
        path = clean(r.get("path"))
        if r.get("resolved_path"):
            path += " -> " + clean(r["resolved_path"])
        rows.append([r.get("sha256"), r.get("size_bytes"), r.get("device_id"),
                     r.get("user"), format_time(r.get("stored_at")), path or MISSING])
    return format_table(["SHA256", "SIZE", "DEVICE", "USER", "STORED", "PATH"], rows, right=[1])
