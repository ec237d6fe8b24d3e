"""Arguments and results of the commands that take files from the library: put, runscript.

The analyst names a library file; the orchestrator fills in its sha256 and size before it signs
the envelope (the line cannot set them), and the agent checks both before it writes or runs.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from tasks.commands.base import CommandArgs, CommandResult

#: A library name: a file name (no slashes), 1-128 characters, not starting with a dot or dash.
LIBRARY_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}")
#: Most arguments a script may be given, and the longest one.
MAX_SCRIPT_ARGS = 256
MAX_SCRIPT_ARG_CHARS = 4096


def check_library_name(name: str) -> str:
    """`name` if it is a valid library name, else ValueError saying what a name may be."""
    if not LIBRARY_NAME_RE.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a library name: 1-128 characters of letters, digits, '.', '_', "
            "'+', '-', not starting with '.' or '-', no slashes"
        )
    return name


class LibraryFileArgs(CommandArgs):
    """What both commands carry: the library name and what the orchestrator resolved it to."""

    name: str
    #: Set by the orchestrator from the library, bound by the envelope's signature.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_library_name(value)


class PutArgs(LibraryFileArgs):
    #: Where to write; default the session's cwd + NAME; an existing directory gets NAME inside.
    dest: str | None = None
    overwrite: bool = False


class PutResult(CommandResult):
    name: str
    path: str
    size_bytes: int
    sha256: str
    #: True when an existing file was replaced (`--overwrite`).
    overwritten: bool


class RunScriptArgs(LibraryFileArgs):
    #: The words after `--` on the line, given to the script as its arguments.
    args: tuple[str, ...] = Field(default=(), max_length=MAX_SCRIPT_ARGS)

    @field_validator("args")
    @classmethod
    def _short_args(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arg in value:
            if len(arg) > MAX_SCRIPT_ARG_CHARS:
                raise ValueError(f"a script argument is longer than {MAX_SCRIPT_ARG_CHARS} "
                                 "characters")
            if "\x00" in arg:
                raise ValueError("a script argument contains a NUL character")
        return value


class RunScriptResult(CommandResult):
    name: str
    sha256: str
    #: The interpreter's argv before the script path (e.g. ["/bin/sh"]).
    interpreter: list[str]
    args: list[str]
    #: The script's exit code; None when it was stopped at its time limit.
    exit_code: int | None
    timed_out: bool
    #: The time limit the script ran under.
    timeout_s: float
    duration_s: float
    #: Captured output (UTF-8, undecodable bytes replaced), each cut with a marker at its limit.
    stdout: str
    stderr: str
    #: Bytes the script wrote to each stream, whether kept or not.
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
