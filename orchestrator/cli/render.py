"""Human rendering of command records: one renderer per command's result."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from orchestrator.cli.errors import describe_error, record_error
from orchestrator.cli.table import (
    MISSING,
    clean,
    format_mib,
    format_table,
    format_time,
    shorten,
)

#: Last line of a result the agent cut to fit the output limit.
TRUNCATED_MARKER = "(output truncated: limit reached)"
#: Widest command line shown in a process listing.
CMDLINE_WIDTH = 80
#: Widest detail cell of a persistence listing.
DETAILS_WIDTH = 100

Result = dict[str, Any]


def render_record(record: dict[str, Any]) -> str:
    """A command record as the analyst reads it; one line for anything but `completed`."""
    error = record_error(record)
    if error is not None:
        return clean(describe_error(error))
    result = record.get("result") or {}
    renderer = _RENDERERS.get(str(record.get("command")), _render_unknown)
    lines = renderer(result)
    if record.get("truncated"):
        lines.append(TRUNCATED_MARKER)
    return "\n".join(lines)


def _render_dir(r: Result) -> list[str]:
    entries = r.get("entries", [])
    rows = []
    for e in entries:
        name = clean(e.get("name"))
        if e.get("link_target") is not None:
            name += " -> " + clean(e["link_target"])
        rows.append(
            [
                e.get("mode"),
                e.get("owner"),
                e.get("group"),
                e.get("size_bytes"),
                format_time(e.get("mtime")),
                name,
            ]
        )
    lines = [f"{clean(r.get('path'))}:"]
    if rows:
        lines.append(
            format_table(["MODE", "OWNER", "GROUP", "SIZE", "MTIME", "NAME"], rows, right=[3])
        )
    else:
        lines.append("(empty)")
    return lines + _unreadable(r, "entries")


def _render_cd(r: Result) -> list[str]:
    return [clean(r.get("cwd"))]


def _render_fileinfo(r: Result) -> list[str]:
    pairs: list[tuple[str, object]] = [
        ("path", r.get("path")),
        ("type", r.get("type")),
        ("size", f"{r.get('size_bytes')} bytes"),
        ("mode", f"{r.get('mode')} ({r.get('mode_octal')})"),
        ("owner", f"{r.get('owner')} (uid {r.get('uid')})"),
        ("group", f"{r.get('group')} (gid {r.get('gid')})"),
        ("inode", r.get("inode")),
        ("links", r.get("links")),
        ("accessed", format_time(r.get("atime"))),
        ("modified", format_time(r.get("mtime"))),
        ("changed", format_time(r.get("ctime"))),
    ]
    if r.get("link_target") is not None:
        pairs.append(("link target", r["link_target"]))
    pairs += [(algo, r[algo]) for algo in ("sha256", "sha1", "md5") if r.get(algo)]
    width = max(len(k) for k, _ in pairs)
    return [f"{k.ljust(width)}  {clean(v)}" for k, v in pairs]


def _render_getfilehash(r: Result) -> list[str]:
    # The layout of sha256sum and friends: digest, two spaces, path; with the algorithm first.
    lines = [
        f"{algo:<6}  {clean(r[algo])}  {clean(r.get('path'))}"
        for algo in ("sha256", "sha1", "md5")
        if r.get(algo)
    ]
    return lines or [f"no digest returned for {clean(r.get('path'))}"]


def _render_getfile(r: Result) -> list[str]:
    path = clean(r.get("path"))
    if r.get("resolved_path"):
        path += " -> " + clean(r["resolved_path"])
    sha = clean(r.get("evidence_sha256") or r.get("sha256"))
    return [
        f"{path}: {r.get('size_bytes')} bytes in {r.get('chunks')} chunks",
        f"sha256  {sha}  (agent and arrival agree)",
        f"stored  {clean(r.get('evidence_path'))}",
        f"copy it with: lr evidence get {sha} --out FILE",
    ]


def _render_findfile(r: Result) -> list[str]:
    matches = r.get("matches", [])
    if matches:
        rows = [[m.get("path"), m.get("type"), m.get("size_bytes")] for m in matches]
        lines = [format_table(["PATH", "TYPE", "SIZE"], rows, right=[2])]
    else:
        lines = [f"no match for {clean(r.get('pattern'))} under {clean(r.get('root'))}"]
    if r.get("truncated"):
        lines.append(f"(stopped after {len(matches)} matches: raise --max to see more)")
    return lines + _unreadable(r, "directories")


def _render_processes(r: Result) -> list[str]:
    rows = []
    for p in r.get("processes", []):
        name = "  " * int(p.get("depth") or 0) + clean(p.get("name"))
        # Some processes pad their title with blanks (postgres): strip them before cutting.
        cmdline = " ".join(clean(a) for a in p.get("cmdline") or []).strip()
        rows.append(
            [
                p.get("pid"),
                p.get("ppid"),
                p.get("user"),
                name,
                format_mib(p.get("rss_bytes")),
                format_time(p.get("started_at")),
                shorten(cmdline or f"[{clean(p.get('name'))}]", CMDLINE_WIDTH),
            ]
        )
    lines = [
        format_table(
            ["PID", "PPID", "USER", "NAME", "RSS MiB", "STARTED", "CMDLINE"], rows, right=[0, 1, 4]
        )
    ]
    if r.get("vanished"):
        lines.append(f"({r['vanished']} processes ended while being listed)")
    return lines


def _render_netstat(r: Result) -> list[str]:
    rows = [
        [
            c.get("proto"),
            _address(c.get("local_address"), c.get("local_port")),
            _address(c.get("remote_address"), c.get("remote_port")),
            c.get("state"),
            c.get("pid"),
            c.get("process_name"),
        ]
        for c in r.get("connections", [])
    ]
    lines = [format_table(["PROTO", "LOCAL", "REMOTE", "STATE", "PID", "PROCESS"], rows, right=[4])]
    if r.get("partial"):
        lines.append("(partial: the agent may not read the owners of some sockets)")
    return lines


def _render_kill(r: Result) -> list[str]:
    killed = r.get("killed") or [r]
    return [_killed_line(k) for k in killed]


def _killed_line(k: Result) -> str:
    indent = "  " * int(k.get("depth") or 0)
    who = f"{indent}pid {k.get('pid')} ({clean(k.get('name'))})"
    if k.get("signal") == "none":
        return f"{who} had already ended"
    if k.get("ended"):
        return f"{who} ended after {clean(k.get('signal'))}"
    return f"{who} sent {clean(k.get('signal'))} but has not ended yet"


def _render_remediate(r: Result) -> list[str]:
    what = {"dir": f"tree of {r.get('files')} entries", "symlink": "link"}.get(
        str(r.get("type")), "file")
    lines = [f"quarantined {what} {clean(r.get('path'))} as {clean(r.get('qid'))}"
             f" ({r.get('size_bytes')} bytes, {clean(r.get('method'))})"]
    if r.get("sha256"):
        lines.append(f"sha256  {clean(r['sha256'])}")
    if r.get("forced"):
        lines.append("(forced past the deny list)")
    lines.append(f"undo with: undo {clean(r.get('qid'))}")
    return lines


def _render_undo(r: Result) -> list[str]:
    lines = [f"restored {clean(r.get('qid'))} to {clean(r.get('path'))}"
             f" ({r.get('files')} entries, sha256 verified)"]
    if not r.get("owner_restored"):
        lines.append("(owner not restored: the agent does not run as root)")
    return lines


def _render_persistence(r: Result) -> list[str]:
    rows = [
        [
            i.get("kind"),
            clean(i.get("path")) + (f" -> {clean(i['link_target'])}" if i.get("link_target")
                                    else ""),
            i.get("owner"),
            format_time(i.get("mtime")),
            (i.get("sha256") or MISSING)[:16],
            shorten(i.get("error") or _item_detail(i.get("detail") or {}), DETAILS_WIDTH),
        ]
        for i in r.get("items", [])
    ]
    if not rows:
        return [f"no persistence items under {clean(r.get('root'))}"]
    lines = [format_table(["KIND", "PATH", "OWNER", "MTIME", "SHA256", "DETAIL"], rows)]
    return lines + _unreadable(r, "places")


def _item_detail(detail: dict[str, Any]) -> str:
    parts = []
    for key, value in detail.items():
        text = "; ".join(clean(v) for v in value) if isinstance(value, list) else clean(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _render_services(r: Result) -> list[str]:
    rows = [[s.get("name"), s.get("load"), s.get("active"), s.get("sub"),
             shorten(clean(s.get("description")), CMDLINE_WIDTH)]
            for s in r.get("services", [])]
    lines = [f"({clean(r['note'])})"] if r.get("note") else []
    return lines + [format_table(["UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"], rows)]


def _render_isolate(r: Result) -> list[str]:
    reachable = ", ".join(clean(b) for b in r.get("broker") or []) or "its unix socket"
    lines = [f"isolated ({clean(r.get('mode'))}): only loopback and the broker "
             f"({reachable}) stay reachable"]
    if r.get("allowed"):
        lines.append("also allowed: " + ", ".join(clean(a) for a in r["allowed"]))
    return lines


def _render_release(r: Result) -> list[str]:
    if r.get("removed"):
        return [f"released: table {clean(r.get('table'))} removed"]
    return [f"was not isolated: no table {clean(r.get('table'))} to remove"]


def _render_put(r: Result) -> list[str]:
    verb = "replaced" if r.get("overwritten") else "wrote"
    return [f"{verb} {clean(r.get('path'))} from library file {clean(r.get('name'))}"
            f" ({r.get('size_bytes')} bytes, sha256 {clean(r.get('sha256'))} verified)"]


def _render_runscript(r: Result) -> list[str]:
    lines = [_output_line(line) for line in str(r.get("stdout") or "").splitlines()]
    err = str(r.get("stderr") or "").splitlines()
    if err:
        lines += ["--- stderr ---", *(_output_line(line) for line in err)]
    took = f"{float(r.get('duration_s') or 0):.1f} s"
    if r.get("timed_out"):
        lines.append(f"{clean(r.get('name'))}: stopped after {r.get('timeout_s'):g} s "
                     "(its time limit), with every process it started")
    else:
        lines.append(f"{clean(r.get('name'))}: exit code {r.get('exit_code')} ({took})")
    return lines


def _output_line(line: str) -> str:
    # Tabs lay out a script's columns; every other control character is shown escaped.
    return "\t".join(clean(part) for part in line.split("\t"))


def _render_unknown(r: Result) -> list[str]:
    # A command this CLI does not know yet: show its result rather than nothing.
    return [clean(line) for line in json.dumps(r, indent=2, sort_keys=True).splitlines()]


def _unreadable(r: Result, what: str) -> list[str]:
    count = r.get("unreadable") or 0
    return [f"({count} {what} could not be read)"] if count else []


def _address(address: str | None, port: int | None) -> str:
    if not address:
        return "*"
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" if port is not None else host


_RENDERERS: dict[str, Callable[[Result], list[str]]] = {
    "dir": _render_dir,
    "cd": _render_cd,
    "fileinfo": _render_fileinfo,
    "getfilehash": _render_getfilehash,
    "getfile": _render_getfile,
    "findfile": _render_findfile,
    "processes": _render_processes,
    "netstat": _render_netstat,
    "kill": _render_kill,
    "remediate": _render_remediate,
    "undo": _render_undo,
    "put": _render_put,
    "runscript": _render_runscript,
    "persistence": _render_persistence,
    "services": _render_services,
    "isolate": _render_isolate,
    "release": _render_release,
}
