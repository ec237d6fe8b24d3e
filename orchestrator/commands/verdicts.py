"""Verdicts on completed results: a command that ran to its end on the agent may still have
failed at what it was for (a script exiting non-zero), and `lr run` exits non-zero for it."""

from __future__ import annotations

from tasks.commands.library import RunScriptResult
from tasks.errors import LiveResponseError, ScriptFailedError


def script_verdict(r: RunScriptResult) -> LiveResponseError | None:
    """A script that exited non-zero or was stopped at its time limit is a failure."""
    if r.timed_out:
        return ScriptFailedError(f"script {r.name} was stopped after {r.timeout_s:g} s, its "
                                 "time limit", hint="its output so far is in the result")
    if r.exit_code:
        return ScriptFailedError(f"script {r.name} exited with code {r.exit_code}",
                                 hint="its output is in the result")
    return None
