"""`lr devices`: the endpoints that registered an agent."""

from __future__ import annotations

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.render_lists import render_devices


@click.command("devices")
@click.option("--tag", metavar="TAG", help="Only devices carrying TAG (e.g. group:web).")
@click.option("--online/--offline", "online", default=None,
              help="Only devices whose agent is (or is not) heard from.")
@pass_cli
def devices(cli: CliContext, tag: str | None, online: bool | None) -> None:
    """List registered devices: online, agent version, open sessions, groups, isolation."""
    cli.emit(cli.client.devices(tag=tag, online=online), render_devices)
