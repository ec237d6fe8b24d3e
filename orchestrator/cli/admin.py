"""`lr admin init` and `lr admin keys init`: bootstrap users and signing keys (no API yet)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import redis

from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.local_redis import bootstrap_redis, find_redis_url
from tasks.errors import ConfigurationError, UsageError

if TYPE_CHECKING:
    from tasks.signing import KeyPair

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
    from orchestrator.audit.setup import orchestrator_audit_log
    from orchestrator.state.identity import create_user, has_any_user, issue_token, revoke_token
    from tasks.keys import Keys
    from tasks.signing import Signer

    client = redis.Redis.from_url(find_redis_url(cli.settings))
    keys = Keys(cli.settings.key_prefix)
    # The entry is signed like every one the orchestrator writes: no key, no first admin.
    try:
        log = orchestrator_audit_log(
            cli.settings, client, keys, Signer.from_file(cli.settings.signing_key_path())
        )
    except BaseException:
        client.close()
        raise
    try:
        # The bootstrap key is the one atomic claim: of two concurrent inits only one wins.
        if has_any_user(client, keys) or not client.set(keys.bootstrap, name, nx=True):
            raise UsageError(
                "users already exist: 'lr admin init' only sets up the first admin",
                hint="ask an existing admin for an account",
            )
        try:
            user = create_user(client, keys, name, ["admin"])
        except BaseException:
            client.delete(keys.bootstrap)
            raise
        token = issue_token(client, keys, user)
        try:
            log.append(
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
            client.delete(keys.user(user.name), keys.bootstrap)
            client.srem(keys.users, user.name)
            raise
    except redis.RedisError as exc:
        raise ConfigurationError(f"Redis failed during admin init: {exc}") from None
    finally:
        log.close()
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


@admin.group("keys")
def keys_group() -> None:
    """The orchestrator's command-signing keys."""


@keys_group.command("init")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the pair [default: <data dir>/keys].",
)
@click.option("--force", is_flag=True, help="Replace existing keys (agents then need the new one).")
@pass_cli
def keys_init(cli: CliContext, directory: Path | None, force: bool) -> None:
    """Create the Ed25519 key pair the orchestrator signs every command with.

    The private key stays with the orchestrator (mode 0600); each agent is started with the
    public key (`lr-agent --orchestrator-key FILE`) and runs nothing else's commands.
    """
    # Keys nobody audited must not appear: the entry is written to the Redis in use (the
    # embedded one is started for it when nothing runs yet), or the new keys are taken back.
    with bootstrap_redis(cli.settings) as url:
        pair = _create_audited_keys(cli, redis.Redis.from_url(url), directory, force)
    if cli.json_output:
        click.echo(
            to_json(
                {
                    "private_key": str(pair.private_path),
                    "public_key": str(pair.public_path),
                    "key_id": pair.key_id,
                }
            )
        )
        return
    click.echo(f"created signing key pair {pair.key_id}")
    click.echo(f"  private key  {pair.private_path}  (orchestrator only, mode 0600)")
    found_here = pair.public_path == cli.settings.orchestrator_public_key_path()
    click.echo(f"  public key   {pair.public_path}  (agents: lr-agent --orchestrator-key FILE"
               + ("; one on this machine finds it here)" if found_here else ")"))
    if cli.settings.signing_key_path() != pair.private_path:
        click.echo(
            f"set LR_SIGNING_KEY_FILE={pair.private_path} for the orchestrator to use it",
            err=True,
        )


def _create_audited_keys(cli: CliContext, client: redis.Redis, directory: Path | None,
                         force: bool) -> KeyPair:
    """Write the pair and its `keys.created` audit entry (closes `client`)."""
    from orchestrator.audit.keys import public_key_beside, retire_public_key
    from orchestrator.audit.setup import orchestrator_audit_log
    from tasks.keys import Keys
    from tasks.signing import PUBLIC_KEY_NAME, Signer, generate_keypair

    target = directory or cli.settings.keys_dir()
    in_force_path = cli.settings.signing_key_path()
    try:
        # The key in force (if any) signs the entry that records its successor.
        in_force = Signer.from_file(in_force_path) if in_force_path.exists() else None
        if force or not (target / PUBLIC_KEY_NAME).exists():
            # The public keys replaced stay trusted for the audit entries they signed.
            for old in {target / PUBLIC_KEY_NAME, public_key_beside(in_force_path)}:
                retire_public_key(old, target)
        pair = generate_keypair(target, overwrite=force)
        signer = in_force or Signer.from_file(pair.private_path)
        log = orchestrator_audit_log(cli.settings, client, Keys(cli.settings.key_prefix), signer)
        try:
            log.append(
                BOOTSTRAP_ACTOR,
                "keys.created",
                pair.key_id,
                "allowed",
                key_id=pair.key_id,
                public_key_file=str(pair.public_path),
                replaced=force,
                os_user=_os_user(),
            )
        except BaseException:
            if not force:  # fresh keys that were never audited: take them back
                pair.private_path.unlink(missing_ok=True)
                pair.public_path.unlink(missing_ok=True)
            raise
        finally:
            log.close()
    except redis.RedisError as exc:
        raise ConfigurationError(f"Redis failed during keys init: {exc}") from None
    finally:
        client.close()
    return pair
