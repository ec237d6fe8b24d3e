"""`lr audit show|verify|export|trim`: read, check, export and trim the audit chain."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from orchestrator.audit.export_file import EXPORT_FORMAT, verify_file
from orchestrator.audit.keys import TrustedKeys
from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.errors import format_error
from orchestrator.cli.render_lists import render_audit, render_verdict
from tasks.errors import AuditChainBrokenError, LiveResponseError, UsageError
from tasks.signing import Verifier

#: Seconds between progress lines on stderr while an export streams in.
PROGRESS_EVERY_S = 1.0


class Timestamp(click.ParamType):
    """A point in time as epoch seconds or ISO 8601 (local time unless it names a zone)."""

    name = "ISO|EPOCH"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            self.fail(
                f"{value!r} is neither epoch seconds nor an ISO 8601 time (e.g. 2025-03-01T14:00)",
                param,
                ctx,
            )


@click.group("audit")
def audit() -> None:
    """Read and verify the tamper-evident audit stream."""


@audit.command("show")
@click.option("--session", "session_id", metavar="ID", help="Only entries of this session.")
@click.option("--device", metavar="D", help="Only entries about this device.")
@click.option("--user", "actor", metavar="U", help="Only entries by this user.")
@click.option("--command", "command_id", metavar="CMD_ID", help="Only this command's entries.")
@click.option("--since", type=Timestamp(), help="Entries at or after this time.")
@click.option("--until", type=Timestamp(), help="Entries at or before this time.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    metavar="N",
    help="Only the newest N matching entries.",
)
@pass_cli
def show(
    cli: CliContext,
    session_id: str | None,
    device: str | None,
    actor: str | None,
    command_id: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
) -> None:
    """Show audit entries, oldest first, filtered by every option given."""
    entries = cli.client.audit(
        session=session_id,
        device=device,
        actor=actor,
        command=command_id,
        since=since,
        until=until,
        limit=limit,
    )
    cli.emit(entries, render_audit)


@audit.command("verify")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check an `lr audit export` file offline (needs neither orchestrator nor Redis).",
)
@click.option(
    "--public-key",
    "public_keys",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PUB",
    multiple=True,
    help="With --file: the orchestrator's public key, to check the signatures of the header, "
    "the entries and a trim's checkpoint; repeat it for keys retired by a rotation "
    "[default: LR_ORCHESTRATOR_PUBLIC_KEY_FILE or <data dir>/keys/orchestrator-signing.pub, "
    "with the keys in retired/ beside it].",
)
@pass_cli
@click.pass_context
def verify(
    ctx: click.Context, cli: CliContext, file: Path | None, public_keys: tuple[Path, ...]
) -> None:
    """Check the chain; exit 12 if any entry was edited, deleted, reordered, rechained, forged
    or cut off.

    Without --file the orchestrator checks the live stream (hashes, signatures and the
    witness of its newest entry); with --file this checks an export, signed header included,
    and reports the first problem's line and entry id.
    """
    if public_keys and file is None:
        raise UsageError(
            "--public-key only applies with --file",
            hint="the orchestrator checks the live stream with its own key",
        )
    verdict = cli.client.audit_verify() if file is None else _verify_file(cli, file, public_keys)
    if verdict.get("ok"):
        cli.emit(verdict, render_verdict)
        return
    error = AuditChainBrokenError(
        render_verdict(verdict), hint="the stream was altered: preserve it and investigate"
    )
    if cli.json_output:
        # The verdict is the machine answer; an extra {"error": ...} would make two documents.
        click.echo(to_json(verdict))
    click.echo(format_error(error), err=True)
    ctx.exit(error.exit_code)


def _verify_file(cli: CliContext, file: Path, public_keys: tuple[Path, ...]) -> dict[str, Any]:
    """The offline verdict on `file`, checked with the keys given, else the default key."""

    def load_keys() -> TrustedKeys | None:
        if public_keys:
            return TrustedKeys([Verifier.from_file(p) for p in public_keys])
        default = cli.settings.orchestrator_public_key_path()
        if not default.exists():
            return None
        return TrustedKeys.with_retired(Verifier.from_file(default), default.parent)

    try:
        return verify_file(file, load_keys).model_dump(mode="json")
    except OSError as exc:
        raise UsageError(
            f"cannot read {file}: {exc.strerror or exc}", hint="check the path and its permissions"
        ) from None


@audit.command("export")
@click.option(
    "--jsonl",
    "target",
    required=True,
    metavar="FILE",
    help="Write the export to FILE as JSON Lines ('-' for standard output).",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@pass_cli
def export(cli: CliContext, target: str, force: bool) -> None:
    """Export the whole audit chain, to be checked offline with `lr audit verify --file`.

    Always the whole chain, never filtered: only a complete chain verifies. The header is
    signed by the orchestrator, so lines dropped from the end are found; entries removed by
    `lr audit trim` are stood for by the signed checkpoint in the header.
    """
    if target == "-":
        summary = _copy_export(cli, sys.stdout)
        click.echo(_render_export(summary, "standard output"), err=True)
        return
    path = Path(target)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="pass --force to overwrite it")
    if path.is_dir():
        raise UsageError(f"{path} is a directory", hint="name a file to write")
    try:
        # Written beside the target and moved over it at the end: never a half export at FILE.
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".partial",
            delete=False,
        ) as tmp:
            try:
                summary = _copy_export(cli, tmp)
            except BaseException:
                tmp.close()
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, path)
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}", hint="choose a file you can write"
        ) from None
    cli.emit({**summary, "file": str(path)}, lambda s: _render_export(s, str(path)))


def _copy_export(cli: CliContext, out: IO[str]) -> dict[str, Any]:
    """Stream the export into `out`, with progress on stderr; check every entry arrived.

    The text is written as it arrives, chunk by chunk; its lines are counted, not split."""
    header: dict[str, Any] | None = None
    start = ""
    count = announced = 0
    shown = time.monotonic()
    with cli.client.audit_export() as chunks:
        for chunk in chunks:
            if header is None:
                start += chunk
                first, newline, chunk = start.partition("\n")
                if not newline:
                    continue
                header = _export_header(first)
                announced = int(header["entries"])
                out.write(first + "\n")
            out.write(chunk)
            count += chunk.count("\n")
            if time.monotonic() - shown >= PROGRESS_EVERY_S:
                click.echo(f"exported {count} of {announced} entries…", err=True)
                shown = time.monotonic()
    if header is None:
        header = _export_header(start)
    if count != announced or (chunk and not chunk.endswith("\n")):
        raise LiveResponseError(
            f"the export stopped after {count} of the {announced} entries it announced",
            hint="entries were trimmed during the export, or the connection dropped; run it again",
        )
    return {"entries": count, "head": header["head"], "trimmed": bool(header["checkpoint"])}


def _export_header(line: str) -> dict[str, Any]:
    """The header line's object; LiveResponseError if the answer is not an export."""
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise LiveResponseError(
            "the orchestrator's export does not start with a liveresponse-audit/1 header",
            hint="is LR_API_URL the orchestrator's address, and of the same version as lr?",
        )
    return header


def _render_export(summary: dict[str, Any], where: str) -> str:
    return f"exported {summary['entries']} audit entries (head {summary['head'][:16]}…) to {where}"


@audit.command("trim")
@click.option(
    "--before", type=Timestamp(), required=True, help="Remove the entries older than this time."
)
@pass_cli
def trim(cli: CliContext, before: float) -> None:
    """Remove old audit entries (admin), keeping a signed checkpoint so the chain verifies.

    The newest entry is always kept, and the trim is itself an audit entry. Export the chain
    first (lr audit export) if the removed entries must be kept.
    """
    result = cli.client.audit_trim(before)
    cli.emit(result, lambda r: str(r.get("message")))
