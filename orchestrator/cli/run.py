"""`lr run SESSION LINE`: one command in a session, and the printing the shell shares."""

from __future__ import annotations

import shlex
from typing import Any

import click

from orchestrator.cli.batch import run_batch
from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.errors import format_error, record_error
from orchestrator.cli.job_forms import JobForms
from orchestrator.cli.progress import follow_record
from orchestrator.cli.render import render_record, verdict_of
from orchestrator.cli.table import clean
from tasks.durations import parse_duration
from tasks.errors import LiveResponseError, UsageError
from tasks.parsing import split_line
from tasks.registry import REGISTRY


def show_record(cli: CliContext, record: dict[str, Any], forms: JobForms | None = None
                ) -> LiveResponseError | None:
    """Print a command record; a command that did not complete also gets one stderr line.
    `forms`: how hints name the job commands (default: the CLI's, `lr fg S… N`).

    Returns the error matching the record's status (for a completed one, its command's
    verdict: a script that exited non-zero), or None when it completed and succeeded.
    """
    forms = forms or JobForms(str(record.get("session_id")))
    if record.get("job") is not None and record.get("status") in ("queued", "running"):
        cli.emit(record, lambda r: background_line(r, forms))
        return None
    error = record_error(record)
    if cli.json_output:
        click.echo(to_json(record))
    elif error is None:
        click.echo(render_record(record))
    if error is None:
        error = verdict_of(record)
    if error is not None:
        # The human rendering of a failed record is this very line: print it once.
        click.echo(forms.rewrite(format_error(error)), err=True)
    return error


def background_line(record: dict[str, Any], forms: JobForms) -> str:
    """`[N] CMD runs in the background …`, naming how to wait for it and stop it."""
    job = record["job"]
    return (f"[{job}] {clean(record['command'])} runs in the background (command "
            f"{record['command_id']}); '{forms.fg(job)}' waits for it, "
            f"'{forms.cancel(job)}' stops it")


def run_line(cli: CliContext, session_id: str, line: str,
             background: bool = False, expires_s: float | None = None) -> dict[str, Any]:
    """Run `line` in the session and return its record.

    A command that sends a file (getfile) is started in the background and followed, with a
    progress bar on a terminal: a long transfer neither hits the request's timeout nor runs
    without a sign of life.
    """
    if background or line.rstrip().endswith("&") or not _sends_file(line):
        return cli.client.run(session_id, line, background, expires_s)
    record = cli.client.run(session_id, line, background=True, expires_s=expires_s)
    if record.get("status") not in ("queued", "running"):
        return record
    return follow_record(lambda: cli.client.get_command(str(record["command_id"])),
                         label=clean(record.get("command")), json_output=cli.json_output)


def _sends_file(line: str) -> bool:
    try:
        words = split_line(line)
    except UsageError:
        return False  # the orchestrator says what is wrong with the line
    spec = REGISTRY.get(words[0]) if words else None
    return spec is not None and spec.sends_file


def join_words(words: tuple[str, ...]) -> str:
    """One word is the line as typed; several are quoted back into one line."""
    return words[0] if len(words) == 1 else shlex.join(words)


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--background", "-b", is_flag=True,
              help="Return at once with a job number (same as ending LINE with '&').")
@click.option("--devices", "selector", metavar="SELECTOR",
              help="Run LINE on many devices instead of in a session: device ids and "
                   "tag:NAME terms, comma-separated (e.g. 'tag:group:web,lap01').")
@click.option("--expires", "expires", metavar="DURATION",
              help="How long the command may wait for an offline device (90s, 2h, 7d).")
@click.argument("words", metavar="[SESSION] LINE", nargs=-1, required=True,
                type=click.UNPROCESSED)
@pass_cli
@click.pass_context
def run(ctx: click.Context, cli: CliContext, background: bool, selector: str | None,
        expires: str | None, words: tuple[str, ...]) -> None:
    """Run one command LINE in SESSION, for example 'dir /tmp', and print its result; with
    --devices, on every device SELECTOR names (a batch: a table of each device's outcome).

    Exits 0 when the command completed (or started in the background), else with the exit
    code of what went wrong (18: a script that exited non-zero or overran its time limit); a
    batch exits 0 only if it completed on every device.
    """
    expires_s = parse_duration(expires) if expires is not None else None
    if selector is not None:
        if background:
            raise UsageError("--background is for one session's command",
                             hint="a batch runs in the background anyway: 'lr batch show ID'")
        run_batch(ctx, cli, selector, join_words(words), expires_s)
        return
    if len(words) < 2:
        raise UsageError("missing LINE", hint="lr run SESSION 'LINE', or lr run --devices "
                                              "SELECTOR 'LINE'")
    error = show_record(cli, run_line(cli, words[0], join_words(words[1:]), background,
                                      expires_s))
    if error is not None:
        ctx.exit(error.exit_code)
