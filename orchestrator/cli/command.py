"""`lr command show CMD_ID [--wait]`: one command's record by its id, e.g. the result of a
command a second person approved, for the analyst who asked for it."""

from __future__ import annotations

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.progress import UNFINISHED, follow_record
from orchestrator.cli.run import show_record
from orchestrator.cli.table import clean


@click.group("command")
def command_group() -> None:
    """Look up one command by its id."""


@command_group.command("show")
@click.argument("command_id", metavar="CMD_ID")
@click.option("--wait", is_flag=True,
              help="Wait until it has an outcome (approved and run, denied, expired).")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@pass_cli
@click.pass_context
def show(ctx: click.Context, cli: CliContext, command_id: str, wait: bool,
         timeout: float | None) -> None:
    """Print CMD_ID's state and, once it has one, its result (exit code as for `lr run`)."""
    fetch = lambda: cli.client.get_command(command_id)  # noqa: E731
    record = (follow_record(fetch, label=command_id, json_output=cli.json_output,
                            timeout_s=timeout) if wait else fetch())
    if record.get("status") in UNFINISHED and not cli.json_output:
        click.echo(f"{clean(record.get('command'))} ({command_id}) is "
                   f"{record.get('status')}; `lr command show {command_id} --wait` waits for "
                   "its result")
        return
    error = show_record(cli, record)
    if error is not None:
        ctx.exit(error.exit_code)
