"""`lr flower`: Flower for operators, on the orchestrator's broker, behind basic auth, read-only."""

from __future__ import annotations

import ipaddress
import logging

import click

from config.settings import redact_url
from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.local_redis import find_redis_url
from orchestrator.cli.serve import check_port_free
from tasks.errors import ConfigurationError

#: Where Flower listens unless told otherwise (Flower's own default port).
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5555
#: Shortest basic-auth password `lr flower` accepts.
MIN_PASSWORD_CHARS = 8
#: What to do when no credentials are set.
AUTH_HINT = "set LR_FLOWER_BASIC_AUTH=user:password (or --no-auth, on a loopback address only)"


def parse_basic_auth(value: str) -> str:
    """`value` if it is `user:password` with a user and a long enough password."""
    user, sep, password = value.partition(":")
    if not sep or not user or len(password) < MIN_PASSWORD_CHARS:
        raise ConfigurationError(
            "LR_FLOWER_BASIC_AUTH must be user:password, with a password of at least "
            f"{MIN_PASSWORD_CHARS} characters",
            hint=AUTH_HINT,
        )
    return value


def is_loopback(address: str) -> bool:
    """True for `localhost` and loopback IPs: only there may Flower run without a login."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def credentials(basic_auth: str | None, no_auth: bool, address: str) -> tuple[str, ...]:
    """The credentials Flower requires; empty only for `--no-auth` on a loopback address."""
    if no_auth:
        if not is_loopback(address):
            raise ConfigurationError(
                f"--no-auth is for a loopback address only, not {address!r}",
                hint="set LR_FLOWER_BASIC_AUTH=user:password to listen there",
            )
        return ()
    if not basic_auth:
        raise ConfigurationError("Flower needs a login: LR_FLOWER_BASIC_AUTH is not set",
                                 hint=AUTH_HINT)
    return (parse_basic_auth(basic_auth),)


@click.command("flower")
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True,
              help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535),
              help="TCP port to listen on.")
@click.option("--no-auth", is_flag=True,
              help="No login (loopback address only; Flower's API then stays closed).")
@pass_cli
def flower(cli: CliContext, address: str, port: int, no_auth: bool) -> None:
    """Watch agents, queues and tasks in Flower, read-only, until interrupted.

    Every request needs the login in LR_FLOWER_BASIC_AUTH (user:password). Flower shows each
    task's name, state, device and times, never a command's arguments or result; it cannot
    send, revoke or stop anything. Uses LR_REDIS_URL, else the embedded Redis of a running
    `lr orchestrator serve`.
    """
    secret = cli.settings.flower_basic_auth
    creds = credentials(secret.get_secret_value() if secret else None, no_auth, address)
    try:
        from orchestrator.flower.server import FlowerConfig, run_flower
    except ImportError as exc:
        raise ConfigurationError(f"Flower is not installed ({exc.name})",
                                 hint="pip install 'liveresponse[flower]'") from None
    url = find_redis_url(cli.settings)
    check_port_free(address, port)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if creds and not is_loopback(address):
        click.echo(f"lr: warning: Flower on {address} sends its login in plain HTTP; put a "
                   "TLS proxy in front", err=True)

    def announce(bound: int | None) -> None:
        login = "basic auth" if creds else "NO LOGIN (loopback only)"
        click.echo(f"lr: Flower on http://{address}:{bound or port} ({login}, read-only; "
                   f"Redis {redact_url(url)}); Ctrl-C stops it", err=True)

    run_flower(FlowerConfig(redis_url=url, address=address, port=port, basic_auth=creds),
               announce)
