"""`lr jobs SESSION`, `lr fg SESSION JOB`, `lr cancel SESSION JOB`: background commands."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.job_forms import JobForms
from orchestrator.cli.progress import UNFINISHED, follow_record
from orchestrator.cli.run import show_record
from orchestrator.cli.table import clean, format_table, format_time
from tasks.errors import UsageError

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


def wait_for_job(cli: CliContext, session_id: str, job: int,
                 timeout_s: float | None = None, forms: JobForms | None = None
                 ) -> dict[str, Any]:
    """Poll job `job` until it ends; show transfer progress on stderr when it is a terminal."""
    record = follow_record(lambda: cli.client.job(session_id, job), label=f"[{job}]",
                           json_output=cli.json_output, timeout_s=timeout_s)
    if record.get("status") in UNFINISHED:
        forms = forms or JobForms(session_id)
        raise UsageError(f"job {job} is still {record.get('status')}",
                         hint=f"wait again with `{forms.fg(job)}`")
    return record


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
    """The shell's `jobs`, `cancel N` (and `fg N`'s argument check: the shell follows it)."""
    if words[0] == "jobs":
        cli.emit(cli.client.jobs(session_id), render_jobs)
        return
    job = job_number(words)
    if words[0] == "fg":
        show_record(cli, wait_for_job(cli, session_id, job, forms=JobForms(session_id, True)),
                    JobForms(session_id, True))
    else:
        record = cli.client.cancel_job(session_id, job)
        click.echo(f"[{job}] {clean(record['command'])} cancelled")


def job_number(words: list[str]) -> int:
    """N of the shell's `fg N` / `cancel N`; UsageError when it is missing or not a number."""
    if len(words) != 2 or not words[1].isdigit():
        raise UsageError(f"{words[0]}: which job?", hint=f"usage: {words[0]} JOB (see 'jobs')")
    return int(words[1])

