"""`lr shell DEVICE`: an interactive session on one device, with history and completion."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.errors import format_error
from orchestrator.cli.jobs import JOB_BUILTINS, run_job_builtin
from orchestrator.cli.render import parse_result
from orchestrator.cli.run import run_line, show_record
from orchestrator.cli.session import warn_if_offline
from orchestrator.cli.table import clean
from tasks.commands.filesystem import CdResult
from tasks.errors import LiveResponseError, NotFoundError, SessionStateError, UsageError
from tasks.registry import REGISTRY

#: Words the shell handles itself; everything else goes to the device.
BUILTINS = ("help", "exit", "quit", "jobs", "fg", "cancel")
#: Lines of history kept between shells.
HISTORY_LENGTH = 1000


@click.command("shell")
@click.argument("device")
@pass_cli
@click.pass_context
def shell(ctx: click.Context, cli: CliContext, device: str) -> None:
    """Open a session on DEVICE and type commands at a prompt ('help' lists them).

    Reads lines from standard input when it is not a terminal, so a shell can be scripted.
    """
    session = cli.client.open_session(device)
    warn_if_offline(session)
    session_id = str(session["id"])
    cwd = str(session.get("cwd") or ".")
    interactive = sys.stdin.isatty()
    save_history = enable_readline(cli.settings.data_dir / "history") if interactive else None
    click.echo(
        f"session {clean(session_id)} on {clean(device)}: "
        "'help' lists commands, 'exit' closes the session"
    )
    ended: LiveResponseError | None = None
    try:
        while True:
            line = read_line(f"lr {clean(device)}:{clean(cwd)}> ", interactive)
            if line is None:
                break
            words = line.split()
            if not words:
                continue
            if words[0] in ("exit", "quit"):
                break
            if words[0] == "help":
                _print_help(words[1] if len(words) > 1 else None)
                continue
            try:
                if words[0] in JOB_BUILTINS:
                    run_job_builtin(cli, session_id, words)
                    continue
                record = run_line(cli, session_id, line)
                if show_record(cli, record) is None:
                    cwd = cwd_after(record, cwd)
            except (SessionStateError, NotFoundError) as exc:
                # The session is gone (closed elsewhere, expired): nothing more can run in it.
                click.echo(format_error(exc), err=True)
                ended = exc
                break
            except LiveResponseError as exc:
                click.echo(format_error(exc), err=True)
                continue
            except KeyboardInterrupt:
                click.echo(
                    "\nlr: interrupted; the command may still finish on the device", err=True
                )
                continue
    finally:
        if save_history is not None:
            save_history()
        if ended is None:
            _close(cli, session_id)
    if ended is not None:
        ctx.exit(ended.exit_code)


def cwd_after(record: dict[str, Any], cwd: str) -> str:
    """The prompt's directory after a completed command: a `cd`'s new one, else `cwd`."""
    if record.get("command") != "cd":
        return cwd
    result = parse_result(record)
    return result.cwd if isinstance(result, CdResult) else cwd


def read_line(prompt: str, interactive: bool) -> str | None:
    """The next line typed (None at end of input); without a terminal, echo it as a transcript."""
    if interactive:
        try:
            return input(prompt)
        except EOFError:
            click.echo()
            return None
        except KeyboardInterrupt:
            # As in any shell, Ctrl-C abandons the line being typed, not the session.
            click.echo()
            return ""
    click.echo(prompt, nl=False)
    raw = sys.stdin.readline()
    if not raw:
        click.echo()
        return None
    line = raw.rstrip("\r\n")
    click.echo(line)
    return line


def render_help(name: str | None = None) -> str:
    """The command list, or one command's usage and options."""
    if name is None:
        width = max(len(spec.usage) for spec in REGISTRY.values())
        lines = ["commands (run on the device):"]
        lines += [f"  {spec.usage.ljust(width)}  {spec.summary}" for spec in REGISTRY.values()]
        lines += [
            "shell:",
            f"  {'help [COMMAND]'.ljust(width)}  show this list, or one command",
            f"  {'LINE &'.ljust(width)}  run LINE in the background (a job)",
            f"  {'jobs | fg N | cancel N'.ljust(width)}  list, wait for, or stop jobs",
            f"  {'exit | quit'.ljust(width)}  close the session and leave",
        ]
        return "\n".join(lines)
    spec = REGISTRY.get(name)
    if spec is None:
        raise UsageError(f"no command {name!r}", hint="type 'help' for the list")
    lines = [f"usage: {spec.usage}", f"  {spec.summary}"]
    for opt in spec.options:
        lines.append(f"  {opt.flag:<10} {opt.help}")
    return "\n".join(lines)


def _print_help(name: str | None) -> None:
    try:
        click.echo(render_help(name))
    except LiveResponseError as exc:
        click.echo(format_error(exc), err=True)


def _close(cli: CliContext, session_id: str) -> None:
    try:
        closed = cli.client.close_session(session_id)
        click.echo(f"session {clean(closed.get('id'))} {clean(closed.get('state'))}")
    except LiveResponseError as exc:
        click.echo(format_error(exc), err=True)


def enable_readline(history_path: Path) -> Callable[[], None] | None:
    """Turn on line editing, history and command completion; returns the history saver."""
    try:
        import readline
    except ImportError:  # not on every platform (Windows)
        return None
    names = sorted({*REGISTRY, *BUILTINS})

    def complete(text: str, state: int) -> str | None:
        before = readline.get_line_buffer()[: readline.get_begidx()].split()
        # Command names go first on the line, or after `help`; paths are the device's.
        if before and before != ["help"]:
            return None
        matches = [n + " " for n in names if n.startswith(text)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" \t")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    try:
        readline.read_history_file(history_path)
    except OSError:
        pass  # first shell, or an unreadable file: start with no history

    def save() -> None:
        try:
            history_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Command lines name paths on endpoints under investigation: owner-only.
            os.close(os.open(history_path, os.O_WRONLY | os.O_CREAT, 0o600))
            readline.write_history_file(history_path)
        except OSError as exc:
            click.echo(f"lr: could not save history to {history_path}: {exc.strerror}", err=True)

    return save
