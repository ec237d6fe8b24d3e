"""The analyst's lines for each command's result model; the command table names which is whose."""

from __future__ import annotations

from orchestrator.cli.table import (
    MISSING,
    clean,
    format_mib,
    format_table,
    format_time,
    shorten,
)
from tasks.commands.acquisition import GetFileResult
from tasks.commands.filesystem import (
    CdResult,
    DirResult,
    FileInfoResult,
    FindFileResult,
    GetFileHashResult,
)
from tasks.commands.isolation import IsolateResult, ReleaseResult
from tasks.commands.library import PutResult, RunScriptResult
from tasks.commands.network import NetstatResult
from tasks.commands.persistence import DetailValue, PersistenceResult, ServicesResult
from tasks.commands.processes import KilledProcess, KillResult, ProcessesResult, ProcessInfo
from tasks.commands.remediation import RemediateResult, UndoResult

#: Widest command line shown in a process listing.
CMDLINE_WIDTH = 80
#: Widest detail cell of a persistence listing.
DETAILS_WIDTH = 100


def render_dir(r: DirResult) -> list[str]:
    rows = []
    for e in r.entries:
        name = clean(e.name)
        if e.link_target is not None:
            name += " -> " + clean(e.link_target)
        rows.append([e.mode, e.owner, e.group, e.size_bytes, format_time(e.mtime), name])
    lines = [f"{clean(r.path)}:"]
    if rows:
        lines.append(
            format_table(["MODE", "OWNER", "GROUP", "SIZE", "MTIME", "NAME"], rows, right=[3])
        )
    else:
        lines.append("(empty)")
    return lines + _unreadable(r.unreadable, "entries")


def render_cd(r: CdResult) -> list[str]:
    return [clean(r.cwd)]


def render_fileinfo(r: FileInfoResult) -> list[str]:
    pairs: list[tuple[str, object]] = [
        ("path", r.path),
        ("type", r.type),
        ("size", f"{r.size_bytes} bytes"),
        ("mode", f"{r.mode} ({r.mode_octal})"),
        ("owner", f"{r.owner} (uid {r.uid})"),
        ("group", f"{r.group} (gid {r.gid})"),
        ("inode", r.inode),
        ("links", r.links),
        ("accessed", format_time(r.atime)),
        ("modified", format_time(r.mtime)),
        ("changed", format_time(r.ctime)),
    ]
    if r.link_target is not None:
        pairs.append(("link target", r.link_target))
    pairs += _digests(r)
    width = max(len(k) for k, _ in pairs)
    return [f"{k.ljust(width)}  {clean(v)}" for k, v in pairs]


def render_getfilehash(r: GetFileHashResult) -> list[str]:
    # The layout of sha256sum and friends: digest, two spaces, path; with the algorithm first.
    lines = [f"{algo:<6}  {clean(digest)}  {clean(r.path)}" for algo, digest in _digests(r)]
    return lines or [f"no digest returned for {clean(r.path)}"]


def _digests(r: FileInfoResult | GetFileHashResult) -> list[tuple[str, object]]:
    """The digests a result carries, strongest first."""
    pairs: list[tuple[str, object]] = [("sha256", r.sha256), ("sha1", r.sha1), ("md5", r.md5)]
    return [(algo, digest) for algo, digest in pairs if digest]


def render_getfile(r: GetFileResult) -> list[str]:
    path = clean(r.path)
    if r.resolved_path:
        path += " -> " + clean(r.resolved_path)
    sha = clean(r.evidence_sha256 or r.sha256)
    return [
        f"{path}: {r.size_bytes} bytes in {r.chunks} chunks",
        f"sha256  {sha}  (agent and arrival agree)",
        f"stored  {clean(r.evidence_path)}",
        f"copy it with: lr evidence get {sha} --out FILE",
    ]


def render_findfile(r: FindFileResult) -> list[str]:
    if r.matches:
        rows = [[m.path, m.type, m.size_bytes] for m in r.matches]
        lines = [format_table(["PATH", "TYPE", "SIZE"], rows, right=[2])]
    else:
        lines = [f"no match for {clean(r.pattern)} under {clean(r.root)}"]
    if r.truncated:
        lines.append(f"(stopped after {len(r.matches)} matches: raise --max to see more)")
    if r.partly_searched:
        lines.append(f"({r.partly_searched} files were searched in their first 8 MiB only)")
    return (lines + _unreadable(r.unreadable, "directories")
            + _unreadable(r.unread_files, "files"))


def render_processes(r: ProcessesResult) -> list[str]:
    rows = []
    for p in r.processes:
        name = "  " * p.depth + clean(p.name)
        # Some processes pad their title with blanks (postgres): strip them before cutting.
        cmdline = " ".join(clean(a) for a in p.cmdline).strip()
        rows.append(
            [
                p.pid,
                p.ppid,
                p.user,
                name,
                format_mib(p.rss_bytes),
                format_time(p.started_at),
                shorten(cmdline or f"[{clean(p.name)}]", CMDLINE_WIDTH),
            ]
        )
    lines = [
        format_table(
            ["PID", "PPID", "USER", "NAME", "RSS MiB", "STARTED", "CMDLINE"], rows, right=[0, 1, 4]
        )
    ]
    if r.vanished:
        lines.append(f"({r.vanished} processes ended while being listed)")
    for p in r.processes:
        lines += _process_details(p)
    return lines


def _process_details(p: ProcessInfo) -> list[str]:
    # Only `processes --pid N` carries them: the files and sockets, not just how many.
    lines = []
    if p.files is not None:
        lines += ["", f"open files of {p.pid} ({len(p.files)}):"]
        if p.files:
            lines.append(format_table(["FD", "MODE", "PATH"],
                                      [[f.fd, f.mode, clean(f.path)] for f in p.files],
                                      right=[0]))
    elif "open_files" in p.denied:
        lines += ["", f"open files of {p.pid}: not readable by the agent"]
    if p.sockets is not None:
        lines += ["", f"sockets of {p.pid} ({len(p.sockets)}):"]
        if p.sockets:
            lines.append(format_table(
                ["PROTO", "LOCAL", "REMOTE", "STATE"],
                [[c.proto, _address(c.local_address, c.local_port),
                  _address(c.remote_address, c.remote_port), c.state] for c in p.sockets]))
    elif "connections" in p.denied:
        lines += ["", f"sockets of {p.pid}: not readable by the agent"]
    return lines


def render_netstat(r: NetstatResult) -> list[str]:
    rows = [
        [
            c.proto,
            _address(c.local_address, c.local_port),
            _address(c.remote_address, c.remote_port),
            c.state,
            c.pid,
            c.process_name,
        ]
        for c in r.connections
    ]
    lines = [format_table(["PROTO", "LOCAL", "REMOTE", "STATE", "PID", "PROCESS"], rows, right=[4])]
    if r.partial:
        lines.append("(partial: the agent may not read the owners of some sockets)")
    return lines


def render_kill(r: KillResult) -> list[str]:
    # An agent that lists nothing acted on the named process alone.
    killed = r.killed or [KilledProcess(pid=r.pid, name=r.name, signal=r.signal, ended=r.ended)]
    return [_killed_line(k) for k in killed]


def _killed_line(k: KilledProcess) -> str:
    who = f"{'  ' * k.depth}pid {k.pid} ({clean(k.name)})"
    if k.signal == "none":
        return f"{who} had already ended"
    if k.ended:
        return f"{who} ended after {clean(k.signal)}"
    return f"{who} sent {clean(k.signal)} but has not ended yet"


def render_remediate(r: RemediateResult) -> list[str]:
    what = (f"tree of {r.files} entries" if r.type == "dir"
            else "link" if r.type == "symlink" else "file")
    lines = [f"quarantined {what} {clean(r.path)} as {clean(r.qid)}"
             f" ({r.size_bytes} bytes, {clean(r.method)})"]
    if r.sha256:
        lines.append(f"sha256  {clean(r.sha256)}")
    if r.forced:
        lines.append("(forced past the deny list)")
    lines.append(f"undo with: undo {clean(r.qid)}")
    return lines


def render_undo(r: UndoResult) -> list[str]:
    lines = [f"restored {clean(r.qid)} to {clean(r.path)} ({r.files} entries, sha256 verified)"]
    if not r.owner_restored:
        lines.append("(owner not restored: the agent does not run as root)")
    return lines


def render_persistence(r: PersistenceResult) -> list[str]:
    rows = [
        [
            i.kind,
            clean(i.path) + (f" -> {clean(i.link_target)}" if i.link_target else ""),
            i.owner,
            format_time(i.mtime),
            (i.sha256 or MISSING)[:16],
            shorten(i.error or _item_detail(i.detail), DETAILS_WIDTH),
        ]
        for i in r.items
    ]
    if not rows:
        return [f"no persistence items under {clean(r.root)}"]
    lines = [format_table(["KIND", "PATH", "OWNER", "MTIME", "SHA256", "DETAIL"], rows)]
    return lines + _unreadable(r.unreadable, "places")


def _item_detail(detail: dict[str, DetailValue]) -> str:
    parts = []
    for key, value in detail.items():
        text = "; ".join(clean(v) for v in value) if isinstance(value, list) else clean(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def render_services(r: ServicesResult) -> list[str]:
    rows = [[s.name, s.load, s.active, s.sub, shorten(clean(s.description), CMDLINE_WIDTH)]
            for s in r.services]
    lines = [f"({clean(r.note)})"] if r.note else []
    return lines + [format_table(["UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"], rows)]


def render_isolate(r: IsolateResult) -> list[str]:
    reachable = ", ".join(clean(b) for b in r.broker) or "its unix socket"
    lines = [f"isolated ({clean(r.mode)}): only loopback and the broker "
             f"({reachable}) stay reachable"]
    if r.allowed:
        lines.append("also allowed: " + ", ".join(clean(a) for a in r.allowed))
    return lines


def render_release(r: ReleaseResult) -> list[str]:
    if r.removed:
        return [f"released: table {clean(r.table)} removed"]
    return [f"was not isolated: no table {clean(r.table)} to remove"]


def render_put(r: PutResult) -> list[str]:
    verb = "replaced" if r.overwritten else "wrote"
    return [f"{verb} {clean(r.path)} from library file {clean(r.name)}"
            f" ({r.size_bytes} bytes, sha256 {clean(r.sha256)} verified)"]


def render_runscript(r: RunScriptResult) -> list[str]:
    lines = [_output_line(line) for line in r.stdout.splitlines()]
    err = r.stderr.splitlines()
    if err:
        lines += ["--- stderr ---", *(_output_line(line) for line in err)]
    if r.timed_out:
        lines.append(f"{clean(r.name)}: stopped after {r.timeout_s:g} s "
                     "(its time limit), with every process it started")
    else:
        lines.append(f"{clean(r.name)}: exit code {r.exit_code} ({r.duration_s:.1f} s)")
    return lines


def _output_line(line: str) -> str:
    # Tabs lay out a script's columns; every other control character is shown escaped.
    return "\t".join(clean(part) for part in line.split("\t"))


def _unreadable(count: int, what: str) -> list[str]:
    return [f"({count} {what} could not be read)"] if count else []


def _address(address: str | None, port: int | None) -> str:
    if not address:
        return "*"
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" if port is not None else host
