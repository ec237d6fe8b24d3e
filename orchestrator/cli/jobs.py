"""`lr jobs SESSION`, `lr fg SESSION JOB`, `lr cancel SESSION JOB`: background commands."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.run import show_record
from orchestrator.cli.table import clean, format_table, format_time
from tasks.errors import UsageError

#: Seconds between two looks at a job `fg` waits for.
POLL_S = 0.25
#: Transfers smaller than this show no progress line.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
_UNFINISHED = ("queued", "running", "pending-approval")
#: The shell's job commands.
JOB_BUILTINS = ("jobs", "fg", "cancel")


def render_jobs(records: list[dict[str, Any]]) -> str:
    """The job table of one session."""
    if not records:
        return "no jobs in this session (end a command line with '&' to start one)"
    return format_table(
        ["JOB", "STATE", "COMMAND ID", "LINE", "STARTED"],
        [[r.get("job"), r.get("status"), r.get("command_id"), clean(r.get("line")),
          format_time(r.get("created_at"))] for r in records])


def progress_text(progress: dict[str, Any] | None) -> str | None:
    """`12.0 of 200.0 MiB (6%)` for a transfer worth showing, else None."""
    if not progress or not progress.get("size"):
        return None
    size, done = int(progress["size"]), int(progress.get("bytes") or 0)
    if size < PROGRESS_MIN_BYTES:
        return None
    mib = 1024 * 1024
    return f"{done / mib:.1f} of {size / mib:.1f} MiB ({100 * done // size}%)"


def wait_for_job(cli: CliContext, session_id: str, job: int,
                 timeout_s: float | None = None) -> dict[str, Any]:
    """Poll job `job` until it ends; show transfer progress on stderr when it is a terminal."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    shown = False
    try:
        while True:
            record = cli.client.job(session_id, job)
            if record.get("status") not in _UNFINISHED:
                return record
            text = progress_text(record.get("progress"))
            if text and sys.stderr.isatty() and not cli.json_output:
                click.echo(f"\r[{job}] {text}", nl=False, err=True)
                shown = True
            if deadline is not None and time.monotonic() > deadline:
                raise UsageError(f"job {job} is still {record.get('status')}",
                                 hint=f"wait again with `lr fg {session_id} {job}`")
            time.sleep(POLL_S)
    finally:
        if shown:
            click.echo("", err=True)


@click.command("jobs")
@click.argument("session_id", metavar="SESSION")
@pass_cli
def jobs(cli: CliContext, session_id: str) -> None:
    """List SESSION's background jobs with their state."""
    cli.emit(cli.client.jobs(session_id), render_jobs)


@click.command("fg")
@click.argument("session_id", metavar="SESSION")
@click.argument("job", type=int)
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@pass_cli
@click.pass_context
def fg(ctx: click.Context, cli: CliContext, session_id: str, job: int,
       timeout: float | None) -> None:
    """Wait for JOB of SESSION and print its result (exit code as for `lr run`)."""
    error = show_record(cli, wait_for_job(cli, session_id, job, timeout))
    if error is not None:
        ctx.exit(error.exit_code)


@click.command("cancel")
@click.argument("session_id", metavar="SESSION")
@click.argument("job", type=int)
@pass_cli
def cancel(cli: CliContext, session_id: str, job: int) -> None:
    """Cancel JOB of SESSION; a running command is stopped on the agent."""
    record = cli.client.cancel_job(session_id, job)
    cli.emit(record, lambda r: f"[{job}] {clean(r['command'])} cancelled")


def run_job_builtin(cli: CliContext, session_id: str, words: list[str]) -> None:
    """The shell's `jobs`, `fg N` and `cancel N`."""
    if words[0] == "jobs":
        cli.emit(cli.client.jobs(session_id), render_jobs)
        return
    if len(words) != 2 or not words[1].isdigit():
        raise UsageError(f"{words[0]}: which job?", hint=f"usage: {words[0]} JOB (see 'jobs')")
    job = int(words[1])
    if words[0] == "fg":
        show_record(cli, wait_for_job(cli, session_id, job))
    else:
        record = cli.client.cancel_job(session_id, job)
        click.echo(f"[{job}] {clean(record['command'])} cancelled")

