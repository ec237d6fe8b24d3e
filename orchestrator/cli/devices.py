"""`lr devices`: the endpoints that registered an agent."""

from __future__ import annotations

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.render_lists import render_devices


@click.command("devices")
@pass_cli
def devices(cli: CliContext) -> None:
    """List registered devices, whether they are online, and their isolation state."""
    cli.emit(cli.client.devices(), render_devices)
