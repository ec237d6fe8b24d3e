"""A command in the shell's foreground: followed until its outcome, Ctrl-C cancels it on the
device, Ctrl-Z leaves it running as a job (as `&` at the end of the line does).

Every line the shell sends starts as a job, so it has a number from the first moment: Ctrl-C
then has something to cancel and Ctrl-Z something to leave running. A key pressed before the
orchestrator answered with that number is held and acted on as soon as it did.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from orchestrator.cli.context import CliContext
from orchestrator.cli.job_forms import JobForms
from orchestrator.cli.progress import UNFINISHED, follow_record
from orchestrator.cli.run import background_line
from orchestrator.cli.table import clean
from tasks.errors import UsageError

#: Ctrl-Z's signal (None where the platform has none: there Ctrl-Z does nothing here).
SIGTSTP: int | None = getattr(signal, "SIGTSTP", None)


class KeyPressed(BaseException):  # noqa: N818 - not an error: how a key unwinds the wait
    """Raised in the main thread when Ctrl-C (SIGINT) or Ctrl-Z (SIGTSTP) arrives while a
    foreground command is followed (a BaseException, so no `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class KeySignals:
    """Ctrl-C and Ctrl-Z while a command runs: raised as KeyPressed once `armed`, held until
    then (the first one counts)."""

    def __init__(self) -> None:
        self.armed = False
        self.pending: int | None = None

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False
            raise KeyPressed(signum)
        if self.pending is None:
            self.pending = signum

    def arm(self) -> None:
        """From now on a key interrupts the wait; one held meanwhile does so at once."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise KeyPressed(signum)
        self.armed = True

    def disarm(self) -> None:
        """Keys are held again (while a cancel is sent, or the result printed)."""
        self.armed = False


@contextmanager
def key_signals() -> Iterator[KeySignals]:
    """Catch Ctrl-C and Ctrl-Z for the block; the previous handlers come back after it (at the
    prompt, Ctrl-C abandons the line being typed and Ctrl-Z suspends `lr` as usual)."""
    keys = KeySignals()
    wanted = [signal.SIGINT] + ([SIGTSTP] if SIGTSTP is not None else [])
    previous = {sig: signal.signal(sig, keys.on_signal) for sig in wanted}
    try:
        yield keys
    finally:
        keys.disarm()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_in_foreground(cli: CliContext, session_id: str, line: str, forms: JobForms
                      ) -> dict[str, Any] | None:
    """Run `line` in the session and follow it: its final record, or None when it was left
    running (a trailing `&`, Ctrl-Z, or waiting for a second person's approval)."""
    with key_signals() as keys:
        record = cli.client.run(session_id, line, background=True)
        job = record.get("job")
        status = record.get("status")
        if job is None or status not in UNFINISHED:
            return record
        if line.rstrip().endswith("&"):
            cli.emit(record, lambda r: background_line(r, forms))
            return None
        if status == "pending-approval":
            click.echo(f"lr: {clean(record.get('command'))} waits for approval by a second "
                       f"person (command {record.get('command_id')}); '{forms.fg(job)}' "
                       "shows its result once approved", err=True)
            return None
        return _follow(cli, session_id, int(job), forms, keys)


def follow_job(cli: CliContext, session_id: str, job: int, forms: JobForms
               ) -> dict[str, Any] | None:
    """The shell's `fg N`: wait for job N as for a foreground command (Ctrl-C, Ctrl-Z)."""
    with key_signals() as keys:
        return _follow(cli, session_id, job, forms, keys)


def _follow(cli: CliContext, session_id: str, job: int, forms: JobForms, keys: KeySignals
            ) -> dict[str, Any] | None:
    fetch = lambda: cli.client.job(session_id, job)  # noqa: E731
    try:
        keys.arm()
        record = follow_record(fetch, label=f"[{job}]", json_output=cli.json_output)
        keys.disarm()
    except KeyPressed as key:
        keys.disarm()
        click.echo()  # the terminal echoed ^C or ^Z without a newline
        if key.signum == SIGTSTP:
            click.echo(background_line(fetch(), forms))
            return None
        return _cancel(cli, session_id, job, forms)
    if record.get("status") == "pending-approval":
        click.echo(f"lr: job {job} waits for approval by a second person; "
                   f"'{forms.fg(job)}' shows its result once approved", err=True)
        return None
    return record


def _cancel(cli: CliContext, session_id: str, job: int, forms: JobForms) -> dict[str, Any] | None:
    try:
        cancelled = cli.client.cancel_job(session_id, job)
    except UsageError:
        # It ended between the key and the cancel: its outcome is what there is to show.
        return follow_record(lambda: cli.client.job(session_id, job), label=f"[{job}]",
                             json_output=cli.json_output)
    click.echo(f"[{job}] {clean(cancelled.get('command'))} cancelled (command "
               f"{cancelled.get('command_id')}); the agent stops it if it had started",
               err=True)
    return None
