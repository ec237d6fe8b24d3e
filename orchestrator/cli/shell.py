"""`lr shell DEVICE`: an interactive session on one device, with history and completion.

Only the session ending (closed elsewhere, expired, gone) ends the shell: every other error
is one line, and the next prompt follows.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.errors import format_error
from orchestrator.cli.foreground import follow_job, run_in_foreground
from orchestrator.cli.job_forms import JobForms
from orchestrator.cli.jobs import job_number, run_job_builtin
from orchestrator.cli.render import parse_result
from orchestrator.cli.run import show_record
from orchestrator.cli.session import cwd_option, warn_if_offline
from orchestrator.cli.shell_input import Completer, RemotePaths, enable_readline, read_line
from orchestrator.cli.shell_words import expand_alias, render_help, shell_word
from orchestrator.cli.table import clean
from tasks.commands.filesystem import CdResult, DirEntry, DirResult
from tasks.errors import LiveResponseError, SessionNotFoundError, SessionStateError

#: Seconds a completion may wait for the device to list a directory.
COMPLETION_TIMEOUT_S = 5.0
#: Errors that mean the session itself is over: the only ones that end the shell.
SESSION_ENDED = (SessionStateError, SessionNotFoundError)


class Shell:
    """One `lr shell`: its session, the prompt's directory, and what each line does."""

    def __init__(self, cli: CliContext, device: str, session: dict[str, Any]) -> None:
        self.cli = cli
        self.device = device
        self.session_id = str(session["id"])
        self.cwd = str(session.get("cwd") or "/")
        self.forms = JobForms(self.session_id, in_shell=True)

    @property
    def prompt(self) -> str:
        return f"lr {clean(self.device)}:{clean(self.cwd)}> "

    def run(self, interactive: bool) -> LiveResponseError | None:
        """Read and run lines until `exit` or the end of input (None), or until the session
        ends (the error saying why)."""
        while True:
            line = read_line(self.prompt, interactive)
            if line is None:
                return None
            try:
                if self.run_line(line) is False:
                    return None
            except SESSION_ENDED as exc:
                self.report(exc)
                return exc
            except LiveResponseError as exc:
                self.report(exc)

    def run_line(self, line: str) -> bool:
        """Run one line; False when it was `exit`."""
        words = line.split()
        if not words:
            return True
        word = shell_word(words[0])
        if word == "exit":
            return False
        if word == "help":
            click.echo(render_help(words[1] if len(words) > 1 else None))
        elif word == "cls":
            click.clear()
        elif word == "fg":
            self.show(follow_job(self.cli, self.session_id, job_number(words), self.forms))
        elif word is not None:
            run_job_builtin(self.cli, self.session_id, words)
        else:
            self.show(run_in_foreground(self.cli, self.session_id, expand_alias(line),
                                        self.forms))
        return True

    def show(self, record: dict[str, Any] | None) -> None:
        """Print a finished command's record and follow a `cd` in the prompt."""
        if record is None:
            return
        if show_record(self.cli, record, self.forms) is None and record.get("command") == "cd":
            result = parse_result(record)
            if isinstance(result, CdResult):
                self.cwd = result.cwd

    def report(self, exc: LiveResponseError) -> None:
        click.echo(self.forms.rewrite(format_error(exc)), err=True)

    def list_dir(self, path: str) -> list[DirEntry]:
        """A directory of the device, for completion (a plain, audited `dir`)."""
        # It expires with the wait: a listing nobody waits for any more never runs later.
        record = self.cli.client.run(self.session_id, f"dir {shlex.quote(path)}",
                                     expires_s=COMPLETION_TIMEOUT_S,
                                     timeout_s=COMPLETION_TIMEOUT_S + 5)
        result = parse_result(record) if record.get("status") == "completed" else None
        return result.entries if isinstance(result, DirResult) else []

    def close(self) -> None:
        try:
            closed = self.cli.client.close_session(self.session_id)
            click.echo(f"session {clean(closed.get('id'))} {clean(closed.get('state'))}")
        except LiveResponseError as exc:
            self.report(exc)


@click.command("shell")
@click.argument("device")
@cwd_option
@pass_cli
@click.pass_context
def shell(ctx: click.Context, cli: CliContext, device: str, cwd: str | None) -> None:
    """Open a session on DEVICE and type commands at a prompt ('help' lists them).

    Ctrl-C cancels the running command, Ctrl-Z (or '&' at the end of a line) leaves it
    running as a job. Reads lines from standard input when it is not a terminal, so a shell
    can be scripted; it ends with an error only when its session does (exit 6).
    """
    session = cli.client.open_session(device, cwd)
    warn_if_offline(session)
    sh = Shell(cli, device, session)
    interactive = sys.stdin.isatty()
    save_history = None
    if interactive:
        completer = Completer(RemotePaths(sh.list_dir), lambda: sh.cwd)
        save_history = enable_readline(cli.settings.data_dir / "history", completer)
    click.echo(f"session {clean(sh.session_id)} on {clean(device)}: "
               "'help' lists commands, 'exit' closes the session")
    ended: LiveResponseError | None = None
    try:
        ended = sh.run(interactive)
    finally:
        if save_history is not None:
            save_history()
        if ended is None:
            sh.close()
    if ended is not None:
        ctx.exit(ended.exit_code)
