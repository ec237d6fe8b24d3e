"""What `lr shell` reads: lines from a terminal with history and completion (command names,
and the device's paths, listed with `dir` and kept per directory), or lines piped in."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from orchestrator.cli.shell_words import completion_words
from tasks.commands.filesystem import DirEntry

#: Lines of history kept between shells.
HISTORY_LENGTH = 1000
#: Words whose argument is a job number: nothing to complete.
JOB_TAKERS = ("fg", "cancel")
#: Characters a completed path may not hold: the shell splits its lines on them.
UNQUOTABLE = frozenset(" \t\n\"'\\")

#: Lists one directory of the device (as typed: absolute, or relative to the session's cwd).
ListDir = Callable[[str], list[DirEntry]]


class RemotePaths:
    """Completes paths on the device from `dir` listings, each directory listed once (per
    working directory, for relative ones) for the life of the shell."""

    def __init__(self, list_dir: ListDir) -> None:
        self.list_dir = list_dir
        self.cache: dict[tuple[str, str], list[DirEntry]] = {}

    def matches(self, text: str, cwd: str) -> list[str]:
        """Completions of the partial path `text`: directories end in `/`, files in a space."""
        slash = max(text.rfind("/"), text.rfind("\\"))
        folder, prefix = text[: slash + 1], text[slash + 1:]
        absolute = folder.startswith(("/", "\\")) or folder[1:3] in (":\\", ":/")
        key = ("" if absolute else cwd, folder)
        if key not in self.cache:
            try:
                self.cache[key] = self.list_dir(folder or ".")
            except Exception:  # noqa: BLE001 - a failed listing only means no completions
                return []
        return sorted(
            folder + e.name + ("/" if e.type == "dir" else " ")
            for e in self.cache[key]
            # Hidden entries only once a prefix is typed, as in a local shell.
            if e.name.startswith(prefix) and (prefix or not e.name.startswith("."))
            and not UNQUOTABLE.intersection(e.name)
        )


class Completer:
    """readline's completer: command names first on the line (or after `help`), paths after."""

    def __init__(self, paths: RemotePaths | None, cwd: Callable[[], str]) -> None:
        self.paths = paths
        self.cwd = cwd
        self._matches: list[str] = []

    def candidates(self, before: list[str], text: str) -> list[str]:
        """Completions of `text`, the words before it on the line being `before`."""
        if not before or before == ["help"]:
            return [n + " " for n in completion_words() if n.startswith(text)]
        if before[0] in JOB_TAKERS or self.paths is None:
            return []
        return self.paths.matches(text, self.cwd())

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            import readline

            before = readline.get_line_buffer()[: readline.get_begidx()].split()
            self._matches = self.candidates(before, text)
        return self._matches[state] if state < len(self._matches) else None


def enable_readline(history_path: Path, completer: Completer) -> Callable[[], None] | None:
    """Turn on line editing, history and completion; returns the history saver."""
    try:
        import readline
    except ImportError:  # not on every platform (Windows)
        return None
    readline.set_completer(completer.complete)
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
