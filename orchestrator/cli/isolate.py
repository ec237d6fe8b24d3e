"""`lr isolate DEVICE` and `lr release DEVICE`: network containment of a device (admin)."""

from __future__ import annotations

from typing import Any, get_args

import click
from pydantic import ValidationError

from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.errors import record_error
from orchestrator.cli.run import show_record
from tasks.commands.isolation import IsolateArgs, IsolationMode
from tasks.envelope import CommandStatus


def show_containment(ctx: click.Context, cli: CliContext, record: dict[str, Any]) -> None:
    """Print the command record; exit with its error's code unless it completed."""
    if record.get("status") == CommandStatus.PENDING_APPROVAL.value:
        if cli.json_output:
            click.echo(to_json(record))
        else:
            click.echo(f"waiting for approval by another user: lr approve {record['command_id']}")
        # Not isolated (or released) yet: a script must not take this for done.
        pending = record_error(record)
        ctx.exit(pending.exit_code if pending else 1)
    error = show_record(cli, record)
    if error is not None:
        ctx.exit(error.exit_code)


@click.command("isolate")
@click.argument("device_id", metavar="DEVICE")
@click.option("--mode", type=click.Choice(get_args(IsolationMode)), default="full",
              show_default=True,
              help="full: only the broker stays reachable; selective: also --allow.")
@click.option("--allow", metavar="ADDR[,ADDR...]",
              help="With --mode selective: IP, CIDR, IP:PORT or [IPv6]:PORT still reachable.")
@pass_cli
@click.pass_context
def isolate(ctx: click.Context, cli: CliContext, device_id: str, mode: str,
            allow: str | None) -> None:
    """Cut DEVICE off the network, all but its broker connection (Linux agents, nftables).

    Commands allowed while isolated (the forensic ones, kill, release) keep working.
    """
    try:  # the same checks the orchestrator makes, before anything is sent
        IsolateArgs(mode=mode, allow=allow)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise click.BadParameter(str(exc.errors()[0]["msg"]), param_hint="--allow") from None
    show_containment(ctx, cli, cli.client.isolate(device_id, mode, allow))


@click.command("release")
@click.argument("device_id", metavar="DEVICE")
@pass_cli
@click.pass_context
def release(ctx: click.Context, cli: CliContext, device_id: str) -> None:
    """Remove DEVICE's isolation: its network is as it was before."""
    show_containment(ctx, cli, cli.client.release(device_id))
