"""`lr session open|list|close`: live-response sessions on devices."""

from __future__ import annotations

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.render_lists import render_sessions
from orchestrator.cli.table import clean


@click.group("session")
def session() -> None:
    """Open, list and close live-response sessions."""


@session.command("open")
@click.argument("device")
@pass_cli
def open_session(cli: CliContext, device: str) -> None:
    """Open a session on DEVICE and print its id."""
    cli.emit(cli.client.open_session(device), lambda s: clean(s["id"]))


@session.command("list")
@click.option("--all", "include_closed", is_flag=True, help="Include closed and expired ones.")
@pass_cli
def list_sessions(cli: CliContext, include_closed: bool) -> None:
    """List open sessions (every session with --all)."""
    cli.emit(cli.client.list_sessions(all=include_closed), render_sessions)


@session.command("close")
@click.argument("session_id", metavar="ID")
@pass_cli
def close_session(cli: CliContext, session_id: str) -> None:
    """Close session ID; its pending commands are revoked."""
    cli.emit(
        cli.client.close_session(session_id),
        lambda s: f"session {clean(s['id'])} {clean(s['state'])}",
    )
