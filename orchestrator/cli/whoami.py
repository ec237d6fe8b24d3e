"""`lr whoami`: the user the token belongs to."""

from __future__ import annotations

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.render_lists import render_whoami


@click.command("whoami")
@pass_cli
def whoami(cli: CliContext) -> None:
    """Show the user and roles of the token in use."""
    cli.emit(cli.client.whoami(), render_whoami)
