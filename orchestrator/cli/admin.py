"""`lr admin init`: create the first admin and its token, straight in Redis (no API yet)."""

from __future__ import annotations

import getpass

import click
import redis

from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.local_redis import find_redis_url
from tasks.errors import ConfigurationError, UsageError

#: Actor of the audit entry: nobody is authenticated before the first user exists.
BOOTSTRAP_ACTOR = "bootstrap"


@click.group("admin")
def admin() -> None:
    """Bootstrap the orchestrator (talks to Redis directly, not to the API)."""


@admin.command("init")
@click.option("--user", "name", default="admin", show_default=True, help="Name of the first admin.")
@pass_cli
def init(cli: CliContext, name: str) -> None:
    """Create the first admin user and print its token once.

    Refused when any user exists: later users are made by an admin through the API.
    """
    # Imported here: `lr run` and friends should not pay for the control plane's modules.
    from orchestrator.audit import AuditLog
    from orchestrator.identity import create_user, has_any_user, issue_token, revoke_token
    from tasks.keys import Keys

    client = redis.Redis.from_url(find_redis_url(cli.settings))
    keys = Keys(cli.settings.key_prefix)
    try:
        if has_any_user(client, keys):
            raise UsageError(
                "users already exist: 'lr admin init' only sets up the first admin",
                hint="ask an existing admin for an account",
            )
        user = create_user(client, keys, name, ["admin"])
        token = issue_token(client, keys, user)
        try:
            AuditLog(client, keys).append(
                BOOTSTRAP_ACTOR,
                "admin.init",
                user.name,
                "allowed",
                user=user.name,
                roles=user.roles,
                os_user=_os_user(),
            )
        except BaseException:
            # An admin nobody audited must not exist: undo, then report.
            revoke_token(client, keys, token)
            client.delete(keys.user(user.name))
            client.srem(keys.users, user.name)
            raise
    except redis.RedisError as exc:
        raise ConfigurationError(f"Redis failed during admin init: {exc}") from None
    finally:
        client.close()
    if cli.json_output:
        click.echo(to_json({"user": user.name, "token": token}))
        return
    click.echo(f"created user {user.name!r} with role admin; its API token:", err=True)
    click.echo(token)
    click.echo(
        "store it now (e.g. export LR_TOKEN=...): it is kept only as a hash and "
        "cannot be shown again",
        err=True,
    )


def _os_user() -> str | None:
    """Who ran the bootstrap on this machine, when the OS can say."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
