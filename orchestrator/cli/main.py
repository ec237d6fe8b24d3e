"""The `lr` group: global options, the context object, and the one place errors become exits."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from config.settings import Settings
from orchestrator.cli.admin import admin
from orchestrator.cli.approve import approvals, approve, deny
from orchestrator.cli.audit import audit
from orchestrator.cli.batch import batch_group
from orchestrator.cli.command import command_group
from orchestrator.cli.context import CliContext, to_json
from orchestrator.cli.demo import demo
from orchestrator.cli.devices import devices
from orchestrator.cli.errors import format_error
from orchestrator.cli.evidence import evidence
from orchestrator.cli.flower import flower
from orchestrator.cli.isolate import isolate, release
from orchestrator.cli.jobs import cancel, fg, jobs
from orchestrator.cli.library import library
from orchestrator.cli.playbook import playbook
from orchestrator.cli.run import run
from orchestrator.cli.serve import orchestrator
from orchestrator.cli.session import session
from orchestrator.cli.shell import shell
from orchestrator.cli.users import device_group, policy_group, token_group, user_group
from orchestrator.cli.whoami import whoami
from tasks.errors import ConfigurationError, LiveResponseError

#: Exit code of an error nobody foresaw (a bug): the same as the base LiveResponseError.
UNEXPECTED_EXIT = LiveResponseError.exit_code


class LrGroup(click.Group):
    """A click group that turns our exceptions into one stderr line and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: it prints usage errors and exits itself
        except LiveResponseError as exc:
            report_error(ctx, exc)
            ctx.exit(exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the user gets one line, never a traceback
            report_error(
                ctx,
                LiveResponseError(
                    f"unexpected error: {type(exc).__name__}: {exc}",
                    hint="this is a bug in lr; please report it with the command you ran",
                ),
            )
            ctx.exit(UNEXPECTED_EXIT)


def report_error(ctx: click.Context, exc: LiveResponseError) -> None:
    """`lr: message (hint)` on stderr; with --json also `{"error": {...}}` on stdout."""
    click.echo(format_error(exc), err=True)
    cli = ctx.find_object(CliContext)
    json_output = cli.json_output if cli else bool(ctx.params.get("json_output"))
    if json_output:
        click.echo(to_json({"error": exc.to_dict()}))


@click.group(cls=LrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--api-url",
    metavar="URL",
    help="The orchestrator's API [default: LR_API_URL or http://127.0.0.1:8765].",
)
@click.option("--token", metavar="TOKEN", help="API token [default: LR_TOKEN].")
@click.version_option(package_name="liveresponse", prog_name="lr")
@click.pass_context
def main(ctx: click.Context, json_output: bool, api_url: str | None, token: str | None) -> None:
    """Live response for incident responders: run forensic commands on remote endpoints."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"bad setting LR_{where.upper()}: {first['msg']}") from None
    cli = CliContext(
        settings=settings,
        json_output=json_output,
        api_url=api_url or settings.api_url,
        token=token or settings.token,
    )
    ctx.obj = cli
    ctx.call_on_close(cli.close)


# One line per command or group; `lr demo` is registered the same way by its own module.
main.add_command(devices)
main.add_command(whoami)
main.add_command(session)
main.add_command(run)
main.add_command(batch_group)
main.add_command(jobs)
main.add_command(fg)
main.add_command(cancel)
main.add_command(shell)
main.add_command(isolate)
main.add_command(release)
main.add_command(audit)
main.add_command(library)
main.add_command(evidence)
main.add_command(admin)
admin.add_command(user_group)
admin.add_command(token_group)
admin.add_command(policy_group)
admin.add_command(device_group)
main.add_command(command_group)
main.add_command(approvals)
main.add_command(approve)
main.add_command(deny)
main.add_command(orchestrator)
main.add_command(demo)
main.add_command(flower)
main.add_command(playbook)


if __name__ == "__main__":
    main()
