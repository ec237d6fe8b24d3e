"""`lr admin user|token|policy|device`: users, tokens, the RBAC policy, device groups (by API)."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.render_lists import format_grants
from orchestrator.cli.table import format_table, format_time

_ROLE_HELP = "Role to grant (viewer, responder, advanced, admin, or one the policy defines)."
_SCOPE_HELP = "Limit the role to devices tagged TAG (a device group, e.g. group:finance)."


@click.group("user")
def user_group() -> None:
    """Users and the roles they hold (admin)."""


@user_group.command("add")
@click.argument("name")
@click.option("--role", required=True, help=_ROLE_HELP)
@click.option("--scope", metavar="TAG", help=_SCOPE_HELP)
@pass_cli
def user_add(cli: CliContext, name: str, role: str, scope: str | None) -> None:
    """Create user NAME holding ROLE (on every device, or only on group TAG).

    Give the new user a token with `lr admin token create NAME`.
    """
    created = cli.client.add_user(name, [{"role": role, "scope": scope}])
    cli.emit(created, lambda u: f"created user {u['name']} (roles: {format_grants(u)})")


@user_group.command("grant")
@click.argument("name")
@click.option("--role", required=True, help=_ROLE_HELP)
@click.option("--scope", metavar="TAG", help=_SCOPE_HELP)
@pass_cli
def user_grant(cli: CliContext, name: str, role: str, scope: str | None) -> None:
    """Give user NAME one more role (a user may hold different roles on different groups)."""
    updated = cli.client.add_grant(name, role, scope)
    cli.emit(updated, lambda u: f"{u['name']} now holds: {format_grants(u)}")


@user_group.command("list")
@pass_cli
def user_list(cli: CliContext) -> None:
    """Every user with their roles and groups."""
    cli.emit(cli.client.users(), lambda users: format_table(
        ["USER", "ROLES", "CREATED"],
        [[u["name"], format_grants(u), format_time(u.get("created_at"))] for u in users]))


@click.group("token")
def token_group() -> None:
    """API tokens: shown once at creation, stored only as a hash."""


class Duration(click.ParamType):
    """A lifetime: seconds, or a number with s, m, h or d (`90d`, `12h`)."""

    name = "DURATION"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        text = str(value).strip().lower()
        unit = self.UNITS.get(text[-1:], None)
        number = text[:-1] if unit else text
        try:
            return float(number) * (unit or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 3600, 12h, 90d)", param, ctx)


@token_group.command("create")
@click.argument("user")
@click.option("--ttl", type=Duration(), help="Lifetime (e.g. 12h, 90d) [default: until revoked].")
@pass_cli
def token_create(cli: CliContext, user: str, ttl: float | None) -> None:
    """Issue a new API token for USER and print it once (--json: {"token": ...})."""
    made = cli.client.create_token(user, ttl)
    if cli.json_output:
        click.echo(to_json(made))
        return
    until = f", expires {format_time(made['expires_at'])}" if made.get("expires_at") else ""
    click.echo(f"token for {made['user']} (id {made['token_id']}{until}):", err=True)
    click.echo(made["token"])
    click.echo("store it now: it is kept only as a hash and cannot be shown again", err=True)


@token_group.command("revoke")
@click.argument("token_or_id", metavar="TOKEN|TOKEN_ID")
@pass_cli
def token_revoke(cli: CliContext, token_or_id: str) -> None:
    """Revoke a token, given as the token itself or its 12-digit id; it stops working at once."""
    done = cli.client.revoke_token(token_or_id)
    cli.emit(done, lambda d: f"revoked token {d['token_id']} of {d['user']}")


@click.group("policy")
def policy_group() -> None:
    """The RBAC policy: roles, device groups, approval rules."""


@policy_group.command("show")
@pass_cli
def policy_show(cli: CliContext) -> None:
    """Print the policy in force (YAML) and who set it."""
    current = cli.client.policy()
    if cli.json_output:
        click.echo(to_json(current))
        return
    origin = ("built-in default" if current.get("default")
              else f"set by {current.get('set_by')} at {format_time(current.get('set_at'))}")
    click.echo(f"# {origin}; {current['digest']}", err=True)
    click.echo(current["yaml"], nl=False)


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_cli
def policy_check(cli: CliContext, file: Path) -> None:
    """Validate a policy file here, without changing anything (errors name line and field)."""
    from orchestrator.policies.loader import load_policy_file

    policy = load_policy_file(file)
    summary = {"file": str(file), "ok": True, "roles": list(policy.roles),
               "groups": policy.groups, "approval_rules": len(policy.approvals)}
    cli.emit(summary, lambda s: f"{s['file']}: ok ({len(s['roles'])} roles, "
                                f"{s['approval_rules']} approval rules)")


@policy_group.command("set")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_cli
def policy_set(cli: CliContext, file: Path) -> None:
    """Make FILE the policy in force on the orchestrator (validated there, audited)."""
    from orchestrator.policies.loader import read_policy_text

    done = cli.client.set_policy(read_policy_text(file), source=file.name)
    if cli.json_output:
        click.echo(to_json(done))
        return
    click.echo(f"policy in force: {done['digest']}")
    for orphan in done.get("orphaned_grants") or []:
        click.echo(f"lr: warning: grant {orphan} names a role this policy does not define; "
                   "it grants nothing now", err=True)


@click.group("device")
def device_group() -> None:
    """Device groups (tags) that scopes and approval rules name; removing a device (admin)."""


@device_group.command("remove")
@click.argument("device_id", metavar="DEVICE")
@pass_cli
def device_remove(cli: CliContext, device_id: str) -> None:
    """Forget decommissioned DEVICE: its record, queue and bindings (its agent stopped)."""
    done = cli.client.remove_device(device_id)
    cli.emit(done, lambda d: f"{d['id']}: removed ({d['waiting_commands_dropped']} waiting "
                             "commands dropped)")


@device_group.command("tag")
@click.argument("device_id", metavar="DEVICE")
@click.argument("tags", metavar="TAG...", nargs=-1)
@pass_cli
def device_tag(cli: CliContext, device_id: str, tags: tuple[str, ...]) -> None:
    """Set DEVICE's tags to exactly TAG... (none given: remove every tag)."""
    device = cli.client.set_tags(device_id, list(tags))
    cli.emit(device, lambda d: f"{d['id']}: tags {', '.join(d['tags']) or 'none'}")
