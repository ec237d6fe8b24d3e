"""`lr session open|list|close`: live-response sessions on devices."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.render_lists import render_sessions
from orchestrator.cli.table import clean, format_age
from tasks import clock


@click.group("session")
def session() -> None:
    """Open, list and close live-response sessions."""


#: `--cwd`, shared by `lr session open` and `lr shell`.
cwd_option = click.option(
    "--cwd", metavar="PATH",
    help="Start the session in this absolute directory on the device [default: /].")


@session.command("open")
@click.argument("device")
@cwd_option
@pass_cli
def open_session(cli: CliContext, device: str, cwd: str | None) -> None:
    """Open a session on DEVICE and print its id (and a warning if DEVICE is offline)."""
    session = cli.client.open_session(device, cwd)
    warn_if_offline(session)
    cli.emit(session, lambda s: clean(s["id"]))


def warn_if_offline(session: dict[str, Any]) -> None:
    """One stderr line when the session's device is offline: its commands will wait."""
    if session.get("device_online") is False:
        seen = session.get("device_last_seen")
        click.echo(
            f"warning: device {clean(session.get('device_id'))} is offline (last seen "
            f"{format_age(seen, clock.now()) if seen else 'never'}); commands wait for its "
            "agent until they expire (choose how long with --expires)", err=True)


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
