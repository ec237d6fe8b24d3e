"""Handlers of the process commands: processes (list or tree) and kill."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

from tasks.commands.network import Connection
from tasks.commands.processes import (
    KillArgs,
    KilledProcess,
    KillResult,
    OpenFile,
    ProcessesArgs,
    ProcessesResult,
    ProcessInfo,
)
from tasks.errors import (
    CommandFailedError,
    EndpointPermissionError,
    ProcessNotFoundError,
    ProtectedProcessError,
)
from worker_agent.context import CommandContext
from worker_agent.network import OwnedSocket, to_connection

#: Seconds a process gets to end after SIGTERM before it is sent SIGKILL.
TERM_GRACE_S = 3.0
#: Seconds we wait for the kernel to remove a process after SIGKILL.
KILL_WAIT_S = 2.0
#: Seconds between checks while waiting for a process to end.
POLL_INTERVAL_S = 0.05
#: Times a tree is re-listed while stopping it before kill --tree gives up on a fork storm.
FREEZE_ROUNDS = 20

T = TypeVar("T")


@dataclass
class ListingTally:
    """What a process listing could not report, filled in while it runs."""

    #: Processes that ended between being listed and being read.
    vanished: int = 0


class _FieldReader:
    """Reads one process's fields, turning psutil's per-field failures into data."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.denied: list[str] = []

    def read(self, field: str, getter: Callable[[], T]) -> T | None:
        try:
            return getter()
        except psutil.ZombieProcess:
            # A zombie still exists (it is listed) but has no memory, fds or cmdline left.
            return None
        except psutil.AccessDenied:
            self.denied.append(field)
            return None
        # NoSuchProcess propagates: the whole process is gone, not just this field.


def read_process(proc: psutil.Process, detailed: bool = False) -> ProcessInfo:
    """Describe one process; unreadable fields are None and named in `denied`. `detailed`:
    list its open files and sockets themselves, not only their counts.

    Raises psutil.NoSuchProcess if the process ended meanwhile.
    """
    reader = _FieldReader(proc)
    with proc.oneshot():
        name = reader.read("name", proc.name)
        cmdline = reader.read("cmdline", proc.cmdline)
        open_files = reader.read("open_files", proc.open_files)
        connections = reader.read("connections", proc.net_connections)
        memory = reader.read("rss_bytes", proc.memory_info)
        info = ProcessInfo(
            pid=proc.pid,
            ppid=reader.read("ppid", proc.ppid),
            name=name or "",
            user=reader.read("user", proc.username),
            cmdline=cmdline or [],
            exe=reader.read("exe", proc.exe) or None,
            started_at=reader.read("started_at", proc.create_time),
            cpu_percent=reader.read("cpu_percent", lambda: proc.cpu_percent(interval=None)),
            rss_bytes=memory.rss if memory is not None else None,
            open_files=len(open_files) if open_files is not None else None,
            connections=len(connections) if connections is not None else None,
            status=reader.read("status", proc.status),
            denied=reader.denied,
        )
    if detailed:
        info = info.model_copy(update={"files": _files(open_files),
                                       "sockets": _sockets(proc.pid, name, connections)})
    return info


def _files(open_files: list[Any] | None) -> list[OpenFile] | None:
    if open_files is None:
        return None
    found = [OpenFile(fd=f.fd, path=f.path, mode=getattr(f, "mode", None)) for f in open_files]
    return sorted(found, key=lambda f: f.fd)


def _sockets(pid: int, name: str | None, connections: list[Any] | None
             ) -> list[Connection] | None:
    if connections is None:
        return None
    names: dict[int, str | None] = {pid: name}
    found = [to_connection(OwnedSocket(c, pid), names) for c in connections]
    return [c for c in found if c is not None]


def collect_processes(
    args: ProcessesArgs, tally: ListingTally | None = None
) -> Iterator[ProcessInfo]:
    """Every readable process (or only `args.pid`), in pid order; vanished ones are counted.

    Raises ProcessNotFoundError when `args.pid` names no running process.
    """
    tally = tally if tally is not None else ListingTally()
    if args.pid is not None:
        try:
            yield read_process(psutil.Process(args.pid), detailed=True)
        except psutil.NoSuchProcess:
            raise ProcessNotFoundError(
                f"no process with pid {args.pid}", hint="list them with 'processes'"
            ) from None
        return
    for pid in sorted(psutil.pids()):
        try:
            yield read_process(psutil.Process(pid))
        except psutil.NoSuchProcess:
            tally.vanished += 1


def order_as_tree(processes: Iterable[ProcessInfo]) -> list[ProcessInfo]:
    """Processes depth-first under their parents (children by pid), each with its depth.

    Roots are processes whose parent is not in the list (or unknown).
    """
    by_pid = {p.pid: p for p in processes}
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for proc in by_pid.values():
        if proc.ppid is None or proc.ppid == proc.pid or proc.ppid not in by_pid:
            roots.append(proc.pid)
        else:
            children.setdefault(proc.ppid, []).append(proc.pid)
    ordered: list[ProcessInfo] = []
    seen: set[int] = set()
    stack = [(pid, 0) for pid in sorted(roots, reverse=True)]
    while stack:
        pid, depth = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ordered.append(by_pid[pid].model_copy(update={"depth": depth}))
        stack.extend((child, depth + 1) for child in sorted(children.get(pid, ()), reverse=True))
    # A parent cycle (pid reuse caught mid-listing) has no root: keep its members at depth 0.
    ordered.extend(by_pid[pid] for pid in sorted(by_pid) if pid not in seen)
    return ordered


def holders_of(real_path: str) -> set[int]:
    """Pids of the processes that hold `real_path` open (those we may read the fds of)."""
    pids: set[int] = set()
    for proc in psutil.process_iter():
        try:
            if any(os.path.realpath(f.path) == real_path for f in proc.open_files()):
                pids.add(proc.pid)
        except (psutil.Error, OSError):
            continue  # vanished or unreadable: it cannot be shown as a holder
    return pids


def run_processes(args: ProcessesArgs, ctx: CommandContext) -> ProcessesResult:
    """List processes, flat by pid or (with `tree`) depth-first under their parents."""
    tally = ListingTally()
    processes = list(collect_processes(args, tally))
    if args.open_path is not None:
        holding = holders_of(os.path.realpath(ctx.resolve(args.open_path)))
        processes = [p for p in processes if p.pid in holding]
    if args.tree:
        processes = order_as_tree(processes)
    return ProcessesResult(processes=processes, vanished=tally.vanished)


def run_kill(args: KillArgs, ctx: CommandContext, *, grace_s: float = TERM_GRACE_S) -> KillResult:
    """End a process (SIGTERM, then SIGKILL after `grace_s`); with `tree`, its descendants
    first, deepest first."""
    check_killable(args.pid, ctx)
    proc = _process(args.pid)
    killed = end_tree(proc, ctx, grace_s) if args.tree else end_level([(proc, 0)], grace_s)
    top = killed[-1]
    return KillResult(pid=top.pid, name=top.name, signal=top.signal, ended=top.ended,
                      killed=killed)


def end_tree(root: psutil.Process, ctx: CommandContext, grace_s: float) -> list[KilledProcess]:
    """End `root` and its descendants, one depth level at a time from the deepest up.

    The whole tree is stopped (SIGSTOP) first, parents before children, so no parent can
    respawn a child we end or fork a new one; whatever is left is resumed at the end. A
    protected process anywhere in the tree refuses the whole request before any signal.
    """
    frozen: dict[int, tuple[psutil.Process, int]] = {}
    try:
        _freeze(root, ctx, frozen)
        levels: dict[int, list[tuple[psutil.Process, int]]] = {}
        for proc, depth in frozen.values():
            levels.setdefault(depth, []).append((proc, depth))
        killed: list[KilledProcess] = []
        for depth in sorted(levels, reverse=True):
            killed += end_level(sorted(levels[depth], key=lambda item: item[0].pid), grace_s)
        return killed
    finally:
        for proc, _ in frozen.values():
            _quietly(proc, signal.SIGCONT)


def _freeze(root: psutil.Process, ctx: CommandContext,
            frozen: dict[int, tuple[psutil.Process, int]]) -> None:
    """SIGSTOP `root` and every descendant (re-listing until no new one appears)."""
    for _ in range(FREEZE_ROUNDS):
        found = [(root, 0)] if root.pid not in frozen else []
        try:
            found += _descendants(root)
        except psutil.NoSuchProcess:
            raise _not_found(root.pid) from None
        fresh = [(p, d) for p, d in found if p.pid not in frozen]
        for proc, _ in fresh:
            check_killable(proc.pid, ctx)
        if not fresh:
            return
        for proc, depth in sorted(fresh, key=lambda item: item[1]):
            frozen[proc.pid] = (proc, depth)
            _send(proc, functools.partial(proc.send_signal, signal.SIGSTOP))
    raise CommandFailedError(f"the tree of pid {root.pid} keeps growing; nothing ended",
                             hint="end its root process without --tree first")


def _descendants(root: psutil.Process) -> list[tuple[psutil.Process, int]]:
    """Every descendant of `root` with its depth below it (1 for children)."""
    out: list[tuple[psutil.Process, int]] = []
    level = [root]
    depth = 0
    while level:
        depth += 1
        nxt: list[psutil.Process] = []
        for parent in level:
            try:
                children = parent.children()
            except psutil.NoSuchProcess:
                if parent is root:
                    raise
                continue
            nxt.extend(children)
        out.extend((child, depth) for child in nxt)
        level = nxt
    return out


def end_level(procs: list[tuple[psutil.Process, int]], grace_s: float) -> list[KilledProcess]:
    """SIGTERM (and SIGCONT) each process, SIGKILL those still there after `grace_s`."""
    names = {proc.pid: _name(proc) for proc, _ in procs}
    sent: dict[int, str] = {}
    for proc, _ in procs:
        sent[proc.pid] = "SIGTERM" if _send(proc, proc.terminate) else "none"
        _quietly(proc, signal.SIGCONT)  # a stopped process handles SIGTERM only once resumed
    ended = {proc.pid: wait_ended(proc, grace_s) for proc, _ in procs}
    for proc, _ in procs:
        if not ended[proc.pid]:
            sent[proc.pid] = "SIGKILL"
            _send(proc, proc.kill)
            ended[proc.pid] = wait_ended(proc, KILL_WAIT_S)
    return [KilledProcess(pid=proc.pid, name=names[proc.pid], signal=sent[proc.pid],
                          ended=ended[proc.pid], depth=depth) for proc, depth in procs]


def check_killable(pid: int, ctx: CommandContext) -> None:
    """Raise ProtectedProcessError for pid 1, the agent's own processes and its parent."""
    if pid == 1:
        raise ProtectedProcessError(
            "refusing to end pid 1 (init): the endpoint would go down",
            hint="end the offending process itself",
        )
    # The context names the agent's processes; our own pid and parent are added in case
    # the handler runs in a pool child the context did not know about.
    if pid in ctx.protected_pids or pid in (os.getpid(), os.getppid()):
        raise ProtectedProcessError(
            f"refusing to end pid {pid}: it is the agent or its parent",
            hint="stop the agent through its service manager instead",
        )


def wait_ended(proc: psutil.Process, timeout_s: float) -> bool:
    """Whether the process ended within `timeout_s` (a zombie counts as ended).

    Polls instead of psutil's wait(): wait() reaps our own children, which would take the exit
    status from whoever started them.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        except psutil.AccessDenied:
            pass  # still there, just not readable
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)


def _send(proc: psutil.Process, signal_fn: Callable[[], None]) -> bool:
    """Send a signal; False when the process had already ended (wait_ended reports it)."""
    try:
        signal_fn()
        return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        raise EndpointPermissionError(
            f"permission denied ending pid {proc.pid}",
            hint="the agent's OS account may not signal this process",
        ) from None


def _quietly(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass  # gone or not ours: nothing left to resume


def _process(pid: int) -> psutil.Process:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise _not_found(pid) from None


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def _not_found(pid: int) -> ProcessNotFoundError:
    return ProcessNotFoundError(f"no process with pid {pid}", hint="list them with 'processes'")
