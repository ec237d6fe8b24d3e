"""`lr approvals`, `lr approve CMD_ID`, `lr deny CMD_ID`: the second person's side."""

from __future__ import annotations

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.run import show_record
from orchestrator.cli.table import clean, format_table, format_time


@click.command("approvals")
@pass_cli
def approvals(cli: CliContext) -> None:
    """Commands waiting for a second person's approval."""
    cli.emit(cli.client.approvals(), lambda records: format_table(
        ["COMMAND ID", "DEVICE", "REQUESTED BY", "LINE", "EXPIRES"],
        [[r["command_id"], r["device_id"], r["user"], clean(r["line"]),
          format_time(r.get("approval_expires_at"))] for r in records],
    ) if records else "no command waits for approval")


@click.command("approve")
@click.argument("command_id", metavar="CMD_ID")
@pass_cli
@click.pass_context
def approve(ctx: click.Context, cli: CliContext, command_id: str) -> None:
    """Approve CMD_ID (requested by someone else); it runs now and its result is printed."""
    error = show_record(cli, cli.client.approve(command_id))
    if error is not None:
        ctx.exit(error.exit_code)


@click.command("deny")
@click.argument("command_id", metavar="CMD_ID")
@click.option("--reason", help="Why (recorded in the audit stream).")
@pass_cli
def deny(cli: CliContext, command_id: str, reason: str | None) -> None:
    """Deny CMD_ID: it never reaches its device."""
    record = cli.client.deny(command_id, reason)
    cli.emit(record, lambda r: f"denied {r['command_id']} ({r['command']} on {r['device_id']}, "
                               f"requested by {r['user']})")
