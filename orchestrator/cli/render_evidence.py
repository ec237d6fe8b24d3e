"""The analyst's lines for the evidence commands: file content, logs, accounts and sessions."""

from __future__ import annotations

from orchestrator.cli.table import MISSING, clean, format_table, format_time, shorten
from tasks.commands.accounts import SessionsResult, UsersResult
from tasks.commands.content import (
    CatResult,
    FileBytes,
    HeadResult,
    HexdumpResult,
    StringsResult,
    TailResult,
)
from tasks.commands.logs import LogEntry, LogsResult

#: Bytes per line of a hex dump, as `hexdump -C` shows them.
HEX_LINE_BYTES = 16
#: Widest message of a log listing.
MESSAGE_WIDTH = 160


def render_cat(r: CatResult) -> list[str]:
    return _text_lines(r) + [_digest_line(r, "--max-bytes")]


def render_head(r: HeadResult) -> list[str]:
    return _text_lines(r) + [_digest_line(r, "--lines")]


def render_tail(r: TailResult) -> list[str]:
    return _text_lines(r) + [_digest_line(r, "--lines")]


def render_hexdump(r: HexdumpResult) -> list[str]:
    return hexdump_lines(r.content(), r.offset) + [_digest_line(r, "--length")]


def hexdump_lines(data: bytes, offset: int) -> list[str]:
    """`data` in the canonical layout of `hexdump -C -v`, offsets counted from `offset`."""
    lines = []
    for at in range(0, len(data), HEX_LINE_BYTES):
        row = data[at:at + HEX_LINE_BYTES]
        cells = [f"{b:02x}" for b in row] + ["  "] * (HEX_LINE_BYTES - len(row))
        left, right = " ".join(cells[:8]), " ".join(cells[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset + at:08x}  {left}  {right}  |{text}|")
    lines.append(f"{offset + len(data):08x}")
    return lines


def render_strings(r: StringsResult) -> list[str]:
    lines = [f"{s.offset:>7} {clean(s.text)}" for s in r.strings]
    whole = f"; file sha256 {r.file_sha256}" if r.file_sha256 else ""
    lines.append(f"-- {len(r.strings)} strings of at least {r.min} characters in "
                 f"{r.scanned_bytes} of {r.size_bytes} bytes, sha256 {r.sha256}{whole}")
    if r.cut:
        lines.append("(cut: the listing reached its limit, or the file is larger than the "
                     "agent scans)")
    return lines


def _text_lines(r: FileBytes) -> list[str]:
    # Bytes that are not UTF-8 are shown as \xNN, control characters escaped, tabs kept.
    text = r.content().decode("utf-8", "backslashreplace")
    return ["\t".join(clean(part) for part in line.split("\t")) for line in text.splitlines()]


def _digest_line(r: FileBytes, option: str) -> str:
    end = r.offset + r.returned_bytes
    whole = f"; file sha256 {r.file_sha256}" if r.file_sha256 else ""
    line = (f"-- bytes {r.offset}-{end} of {r.size_bytes} ({r.returned_bytes} returned, "
            f"sha256 {r.sha256}{whole})")
    return line + (f" (cut: raise {option})" if r.cut else "")


def render_logs(r: LogsResult) -> list[str]:
    lines = [f"({r.source}: {', '.join(clean(p) for p in r.paths)})"]
    if r.entries:
        lines += [_entry_line(e) for e in r.entries]
    elif r.logins:
        rows = [[x.user, x.line, x.host or x.address or MISSING, x.type, format_time(x.time),
                 x.pid] for x in r.logins]
        lines.append(format_table(["USER", "LINE", "HOST", "TYPE", "TIME", "PID"], rows,
                                  right=[5]))
    elif r.lastlog:
        rows = [[x.user or MISSING, x.uid, x.line, x.host or MISSING, format_time(x.time)]
                for x in r.lastlog]
        lines.append(format_table(["USER", "UID", "LINE", "HOST", "TIME"], rows, right=[1]))
    else:
        lines.append("no entries match")
    shown = len(r.entries) + len(r.logins) + len(r.lastlog)
    if r.matched > shown:
        lines.append(f"(the newest {shown} of {r.matched} matching entries: raise --max)")
    if r.skipped_bytes:
        lines.append(f"(the oldest {r.skipped_bytes} bytes of the log were not read)")
    if r.trailing_bytes:
        lines.append(f"({r.trailing_bytes} bytes at the end are not a whole record)")
    return lines


def _entry_line(e: LogEntry) -> str:
    who = clean(e.program) if e.program else ""
    if e.pid is not None:
        who += f"[{e.pid}]"
    parts = [format_time(e.time) if e.time is not None else "", clean(e.host or ""),
             f"{who}:" if who else "", shorten(clean(e.message), MESSAGE_WIDTH)]
    return " ".join(p for p in parts if p)


def render_users(r: UsersResult) -> list[str]:
    rows = [[u.name, u.uid, u.gid, u.shell, u.password, "yes" if u.sudo else "",
             format_time(u.last_login), ",".join(u.groups)] for u in r.users]
    lines = [format_table(["USER", "UID", "GID", "SHELL", "PASSWORD", "SUDO", "LAST LOGIN",
                           "GROUPS"], rows, right=[1, 2])]
    for u in r.users:
        if u.sudo:
            lines.append(f"sudo: {clean(u.name)} via {'; '.join(clean(v) for v in u.sudo_via)}")
    if r.unreadable:
        lines.append("(could not read: " + ", ".join(clean(p) for p in r.unreadable) + ")")
    return lines


def render_sessions(r: SessionsResult) -> list[str]:
    if not r.sessions:
        return [f"nobody is logged in ({clean(r.path)})"]
    rows = [[s.user, s.line, s.host or s.address or MISSING, format_time(s.login_time), s.pid,
             MISSING if s.alive is None else ("yes" if s.alive else "no")]
            for s in r.sessions]
    return [format_table(["USER", "LINE", "HOST", "LOGIN", "PID", "ALIVE"], rows, right=[4])]
