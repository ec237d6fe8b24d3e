"""`lr audit show|verify`: read the audit stream and check its hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.errors import AuditChainBrokenError, format_error
from orchestrator.cli.render import render_audit, render_verdict


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
@pass_cli
@click.pass_context
def verify(ctx: click.Context, cli: CliContext) -> None:
    """Recompute the hash chain; exit 12 if any entry was edited, deleted or reordered."""
    verdict = cli.client.audit_verify()
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
