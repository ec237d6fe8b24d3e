"""`lr run SESSION LINE`: one command in a session, and the printing the shell shares."""

from __future__ import annotations

import shlex
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.errors import format_error, record_error
from orchestrator.cli.render import render_record
from tasks.errors import LiveResponseError


def show_record(cli: CliContext, record: dict[str, Any]) -> LiveResponseError | None:
    """Print a command record; a command that did not complete also gets one stderr line.

    Returns the error matching the record's status, or None when it completed.
    """
    error = record_error(record)
    if cli.json_output:
        click.echo(to_json(record))
    elif error is None:
        click.echo(render_record(record))
    if error is not None:
        # The human rendering of a failed record is this very line: print it once.
        click.echo(format_error(error), err=True)
    return error


def join_words(words: tuple[str, ...]) -> str:
    """One word is the line as typed; several are quoted back into one line."""
    return words[0] if len(words) == 1 else shlex.join(words)


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("session_id", metavar="SESSION")
@click.argument("words", metavar="LINE", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_cli
@click.pass_context
def run(ctx: click.Context, cli: CliContext, session_id: str, words: tuple[str, ...]) -> None:
    """Run one command LINE in SESSION, for example 'dir /tmp', and print its result.

    Exits 0 when the command completed, else with the exit code of what went wrong.
    """
    error = show_record(cli, cli.client.run(session_id, join_words(words)))
    if error is not None:
        ctx.exit(error.exit_code)
