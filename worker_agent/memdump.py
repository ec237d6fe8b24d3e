"""Handler of `memdump`: a process's readable memory streamed into the evidence store.

Every mapping /proc/PID/maps lists as readable is read from /proc/PID/mem and sent, in address
order, as one dump file (layout in tasks/commands/memory.py): the region bytes, then a JSON
manifest of where each region's bytes are, then a fixed trailer. A region the kernel will not
let us read (`[vvar]`, memory gone since the listing) is skipped and listed; one that fails
part way keeps what was read and says why. The process runs on while it is read: the dump is
what each page held when its turn came. pid 1 and the agent itself are refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tasks import clock
from tasks.commands.memory import (
    MEMDUMP_FORMAT,
    MemdumpArgs,
    MemdumpResult,
    MemoryRegion,
    trailer,
)
from tasks.errors import (
    EndpointPermissionError,
    FileTooLargeError,
    ProcessNotFoundError,
    ProtectedProcessError,
)
from worker_agent.context import CommandContext
from worker_agent.stream_writer import StreamedFile, streamed_file
from worker_agent.system_state import require_linux


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    path: str

    @property
    def size_bytes(self) -> int:
        return self.end - self.start

    def region(self, offset: int, size_bytes: int, reason: str | None) -> MemoryRegion:
        return MemoryRegion(start=hex(self.start), end=hex(self.end), perms=self.perms,
                            path=self.path, offset=offset, size_bytes=size_bytes, reason=reason)


def run_memdump(args: MemdumpArgs, ctx: CommandContext) -> MemdumpResult:
    """Send the readable memory of process `args.pid` as one dump file."""
    require_linux("memdump")
    check_dumpable(args.pid, ctx)
    proc = Path(f"/proc/{args.pid}")
    maps_text, name = _read_proc(args.pid, proc)
    readable = [m for m in parse_maps(maps_text) if m.perms.startswith("r")]
    limit = ctx.settings.getfile_max_bytes
    if args.max_bytes is not None:
        limit = min(limit, args.max_bytes)
    total = sum(m.size_bytes for m in readable)
    if total > limit:
        raise FileTooLargeError(
            f"pid {args.pid} ({name}) maps {total} readable bytes, over the limit of "
            f"{limit} bytes", hint="raise LR_GETFILE_MAX_BYTES on the orchestrator and agent")
    try:
        fd = os.open(proc / "mem", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _gone(args.pid) from None
    except PermissionError:
        raise _denied(args.pid) from None
    chunk_bytes = ctx.settings.transfer_chunk_bytes
    try:
        with streamed_file(ctx, f"/proc/{args.pid}/mem", clock.now(), limit,
                           "memdump") as out:
            regions: list[MemoryRegion] = []
            skipped: list[MemoryRegion] = []
            for mapping in readable:
                region = copy_region(fd, mapping, out, chunk_bytes)
                (regions if region.size_bytes else skipped).append(region)
            manifest = json.dumps({
                "format": MEMDUMP_FORMAT, "pid": args.pid, "name": name,
                "regions": [r.model_dump() for r in regions],
                "skipped": [r.model_dump(exclude={"offset", "size_bytes"}) for r in skipped],
            }, sort_keys=True).encode()
            out.write(manifest)
            out.write(trailer(len(manifest)))
            sha256 = out.finish()
    finally:
        os.close(fd)
    return MemdumpResult(pid=args.pid, name=name, regions=regions, skipped=skipped,
                         size_bytes=out.size_bytes, sha256=sha256, chunks=out.chunks,
                         chunk_bytes=chunk_bytes)


def check_dumpable(pid: int, ctx: CommandContext) -> None:
    """ProtectedProcessError for pid 1 and the agent's own processes, or a thread of one (its
    memory holds the broker's credentials)."""
    # A thread id opens /proc/TID as well as a pid does: judge the process it belongs to.
    owner = thread_group(pid)
    if 1 in (pid, owner):
        raise ProtectedProcessError("refusing to dump pid 1 (init)",
                                    hint="dump the suspicious process itself")
    if {pid, owner} & (set(ctx.protected_pids) | {os.getpid(), os.getppid()}):
        raise ProtectedProcessError(f"refusing to dump pid {pid}: it is the agent or its parent",
                                    hint="the agent's memory holds its own credentials")


def thread_group(pid: int) -> int:
    """The process (thread group) `pid` belongs to: itself unless it names a thread."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(errors="replace").splitlines():
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return pid


def parse_maps(text: str) -> list[Mapping]:
    """The lines of /proc/PID/maps: `start-end perms offset dev inode [path]`."""
    mappings = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5 or "-" not in fields[0]:
            continue
        start, _, end = fields[0].partition("-")
        mappings.append(Mapping(start=int(start, 16), end=int(end, 16), perms=fields[1],
                                path=fields[5].strip() if len(fields) > 5 else ""))
    return mappings


def copy_region(fd: int, mapping: Mapping, out: StreamedFile, chunk_bytes: int) -> MemoryRegion:
    """Read one mapping into the dump; the region as the manifest lists it (size 0: skipped)."""
    offset = out.size_bytes
    address = mapping.start
    reason = None
    while address < mapping.end:
        want = min(chunk_bytes, mapping.end - address)
        try:
            data = os.pread(fd, want, address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            break
        if not data:
            reason = "the process ended or unmapped it while it was read"
            break
        out.write(data)
        address += len(data)
    read = address - mapping.start
    return mapping.region(offset=offset if read else 0, size_bytes=read, reason=reason)


def _read_proc(pid: int, proc: Path) -> tuple[str, str]:
    try:
        return (proc / "maps").read_text(errors="replace"), \
            (proc / "comm").read_text(errors="replace").strip()
    except FileNotFoundError:
        raise _gone(pid) from None
    except PermissionError:
        raise _denied(pid) from None


def _gone(pid: int) -> ProcessNotFoundError:
    return ProcessNotFoundError(f"no process with pid {pid}", hint="list them with 'processes'")


def _denied(pid: int) -> EndpointPermissionError:
    return EndpointPermissionError(
        f"permission denied reading the memory of pid {pid}",
        hint="the agent needs root (or CAP_SYS_PTRACE) to read another user's process")
