"""The analyst's lines for the system state and evidence commands: modules, mounts, interfaces,
env, history, memdump, collect."""

from __future__ import annotations

from orchestrator.cli.table import clean, format_table, format_time
from tasks.commands.collect import CollectResult
from tasks.commands.memory import MemdumpResult
from tasks.commands.system import InterfacesResult, ModulesResult, MountsResult
from tasks.commands.user_traces import EnvResult, HistoryResult

#: Most skipped entries or regions listed one per line before the rest is counted.
LISTED_SKIPS = 20


def render_modules(r: ModulesResult) -> list[str]:
    if not r.modules:
        return [f"no modules loaded ({clean(r.source)} is empty)"]
    rows = [[m.name, m.size_bytes, "-" if m.refcount is None else m.refcount,
             ",".join(m.users) or "-", m.state, m.taint or "-"] for m in r.modules]
    return [format_table(["MODULE", "SIZE", "USED", "BY", "STATE", "TAINT"], rows,
                         right=[1, 2])]


def render_mounts(r: MountsResult) -> list[str]:
    rows = [[m.target, m.source, m.fstype, ",".join(m.options)] for m in r.mounts]
    return [format_table(["TARGET", "SOURCE", "FSTYPE", "OPTIONS"], rows)]


def render_interfaces(r: InterfacesResult) -> list[str]:
    rows = []
    for i in r.interfaces:
        addresses = [f"{a.address}/{a.prefixlen}" for a in i.addresses] or ["-"]
        for n, address in enumerate(addresses):
            first = n == 0
            rows.append([i.name if first else "", ("up" if i.up else "down") if first else "",
                         (i.mtu if i.mtu is not None else "-") if first else "",
                         (i.mac or "-") if first else "", address])
    lines = [format_table(["INTERFACE", "STATE", "MTU", "MAC", "ADDRESS"], rows, right=[2])]
    routes = [[rt.destination, rt.gateway or "-", rt.interface, rt.metric] for rt in r.routes]
    if routes:
        lines += ["", format_table(["DESTINATION", "GATEWAY", "INTERFACE", "METRIC"], routes,
                                   right=[3])]
    return lines


def render_env(r: EnvResult) -> list[str]:
    lines = [f"pid {r.pid} ({clean(r.name)}): {len(r.variables)} variables"]
    lines += [f"{clean(v.name)}={clean(v.value)}" for v in r.variables]
    redacted = sum(v.redacted for v in r.variables)
    if redacted:
        lines.append(f"({redacted} values redacted: their names look like secrets', or they "
                     "hold a password in a URL)")
    return lines


def render_history(r: HistoryResult) -> list[str]:
    if not r.files:
        return [f"no shell history in the homes listed by {clean(r.root.rstrip('/'))}"
                "/etc/passwd"]
    lines = []
    for f in r.files:
        head = (f"{clean(f.path)} ({f.shell}, account {clean(f.user)}, owner {clean(f.owner)},"
                f" {f.size_bytes} bytes, modified {format_time(f.mtime)})")
        lines.append(head)
        if f.link_target is not None:
            lines.append(f"  symlink -> {clean(f.link_target)} (not followed)")
        if f.sha256:
            lines.append(f"  sha256 {f.sha256}, {f.total_lines} lines"
                         + (f", the last {len(f.lines)}:" if f.lines else ""))
        lines += [f"  {clean(line)}" for line in f.lines]
        if f.error:
            lines.append(f"  ({clean(f.error)})")
    if r.unreadable:
        lines.append(f"({r.unreadable} home directories could not be read)")
    return lines


def render_memdump(r: MemdumpResult) -> list[str]:
    sha = clean(r.evidence_sha256 or r.sha256)
    lines = [
        f"pid {r.pid} ({clean(r.name)}): {len(r.regions)} regions, {r.size_bytes} bytes "
        f"in {r.chunks} chunks",
        f"sha256  {sha}  (agent and arrival agree)",
        f"stored  {clean(r.evidence_path)}",
    ]
    partial = [g for g in r.regions if g.reason]
    for g in [*r.skipped, *partial][:LISTED_SKIPS]:
        what = "skipped" if g in r.skipped else f"cut at {g.size_bytes} bytes"
        lines.append(f"  {what}: {g.start}-{g.end} {g.perms} {clean(g.path) or '(anonymous)'}"
                     f": {clean(g.reason)}")
    _more(lines, len(r.skipped) + len(partial))
    lines.append(f"copy it with: lr evidence get {sha} --out FILE (layout: docs/evidence.md)")
    return lines


def render_collect(r: CollectResult) -> list[str]:
    sha = clean(r.evidence_sha256 or r.sha256)
    kinds = {kind: sum(m.type == kind for m in r.members) for kind in ("file", "dir", "symlink")}
    lines = [
        f"{clean(r.path)}: {kinds['file']} files, {kinds['dir']} directories, "
        f"{kinds['symlink']} symlinks; archive of {r.size_bytes} bytes in {r.chunks} chunks",
        f"sha256  {sha}  (agent and arrival agree)",
        f"stored  {clean(r.evidence_path)}",
    ]
    for s in r.skipped[:LISTED_SKIPS]:
        lines.append(f"  skipped {clean(s.path)} ({s.type}): {clean(s.reason)}")
    _more(lines, len(r.skipped))
    lines.append(f"copy it with: lr evidence get {sha} --out FILE.tar "
                 "(the manifest is its last member)")
    return lines


def _more(lines: list[str], listed: int) -> None:
    if listed > LISTED_SKIPS:
        lines.append(f"  ... and {listed - LISTED_SKIPS} more (--json lists them all)")
