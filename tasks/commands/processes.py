"""Arguments and results of the process commands: processes, kill."""

from __future__ import annotations

from pydantic import Field

from tasks.commands.base import CommandArgs, CommandResult
from tasks.commands.network import Connection


class ProcessesArgs(CommandArgs):
    pid: int | None = Field(default=None, ge=0)
    tree: bool = False
    #: Only processes that hold this file open (an absolute path; compared once resolved).
    open_path: str | None = Field(default=None, min_length=1)


class OpenFile(CommandResult):
    """A regular file a process holds open."""

    fd: int
    path: str
    #: How it was opened ("r", "w", "a", "r+", ...) where the platform says.
    mode: str | None = None


class ProcessInfo(CommandResult):
    pid: int
    ppid: int | None
    name: str
    user: str | None
    cmdline: list[str]
    exe: str | None
    started_at: float | None
    cpu_percent: float | None
    rss_bytes: int | None
    open_files: int | None
    connections: int | None
    status: str | None
    #: Depth in the tree (0 for roots) when `--tree` was asked, else 0.
    depth: int = 0
    #: Fields the agent could not read for this process (access denied).
    denied: list[str] = Field(default_factory=list)
    #: With `--pid`: the files themselves (None in a listing, or when unreadable).
    files: list[OpenFile] | None = None
    #: With `--pid`: its TCP and UDP sockets, as netstat shows them (None as for `files`).
    sockets: list[Connection] | None = None


class ProcessesResult(CommandResult):
    processes: list[ProcessInfo]
    #: Processes that vanished while being read.
    vanished: int = 0


class KillArgs(CommandArgs):
    pid: int = Field(ge=1)
    #: End the process's descendants too, deepest first, then the process itself.
    tree: bool = False


class KilledProcess(CommandResult):
    """One process a kill acted on: the last signal it was sent and whether it ended."""

    pid: int
    name: str
    signal: str
    ended: bool
    #: Depth below the process named in the command (0 for that process).
    depth: int = 0


class KillResult(CommandResult):
    pid: int
    name: str
    signal: str
    ended: bool
    #: Every process acted on, in the order they were ended (children first; the named pid last).
    killed: list[KilledProcess] = Field(default_factory=list)
