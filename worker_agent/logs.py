"""Handler of `logs`: the journal (through journalctl), the classic syslog files, and the login
records (wtmp, btmp, lastlog) decoded.

Files are read under `settings.system_root` ("/" on a live endpoint) and named as the endpoint
names them. Only the newest `max` matching entries are kept, oldest first.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from tasks.commands.logs import LogEntry, LogsArgs, LogSource, LogsResult
from tasks.errors import CommandFailedError, PathNotFoundError, UnsupportedOnEndpointError
from tasks.times import parse_point_in_time
from worker_agent.account_files import user_names
from worker_agent.command_processes import stopped_with_command
from worker_agent.context import CommandContext
from worker_agent.filesystem import oserrors_mapped
from worker_agent.log_lines import parse_journal_line, parse_syslog_line
from worker_agent.utmp import read_lastlog, read_utmp

#: The files of each text source, the first that exists read (Debian's, then Red Hat's).
LOG_FILES: dict[str, tuple[str, ...]] = {
    "auth": ("var/log/auth.log", "var/log/secure"),
    "syslog": ("var/log/syslog", "var/log/messages"),
}
#: The login record files.
LOGIN_FILES = {"wtmp": "var/log/wtmp", "btmp": "var/log/btmp", "lastlog": "var/log/lastlog"}
#: Where journald keeps its files (persistent, volatile).
JOURNAL_DIRS = ("var/log/journal", "run/log/journal")
#: Bytes of a log file read at most: its last ones (the newest lines).
LOG_SCAN_MAX_BYTES = 256 * 1024 * 1024
#: How long journalctl may take to produce what was asked.
JOURNALCTL_TIMEOUT_S = 60.0


def run_logs(args: LogsArgs, ctx: CommandContext) -> LogsResult:
    """The newest `args.max` entries of one log source that match `--since` and `--grep`."""
    root = ctx.system_root("logs")
    source: LogSource = args.source or ("journal" if journal_present(root) else "syslog")
    since = parse_point_in_time(args.since, time.time()) if args.since else None
    pattern = re.compile(args.grep) if args.grep else None
    match = Filter(since, pattern, args.max)
    if source == "journal":
        entries = match.keep_entries(read_journal(root, since), newest_first=True)
        return LogsResult(source=source, paths=["journalctl"], entries=entries,
                          matched=match.matched)
    if source in LOG_FILES:
        lines = LogLines(log_files(root, source))
        entries = match.keep_entries(lines)
        return LogsResult(source=source, paths=[shown(root, p) for p in lines.paths],
                          entries=entries, matched=match.matched,
                          skipped_bytes=lines.skipped_bytes)
    path = root / LOGIN_FILES[source]
    with oserrors_mapped(shown(root, path)):
        if source == "lastlog":
            slots = read_lastlog(path, user_names(root))
            lastlog = [e for e in slots if match.wanted(e.time, f"{e.user} {e.line} {e.host}")]
            return LogsResult(source=source, paths=[shown(root, path)],
                              lastlog=lastlog[-args.max:], matched=len(lastlog))
        records, leftover = read_utmp(path)
    logins = [r for r in records
              if match.wanted(r.time, f"{r.user} {r.line} {r.host} {r.address or ''}")]
    return LogsResult(source=source, paths=[shown(root, path)], logins=logins[-args.max:],
                      matched=len(logins), trailing_bytes=leftover)


class Filter:
    """`--since` and `--grep`, counting what matched."""

    def __init__(self, since: float | None, pattern: re.Pattern[str] | None, most: int) -> None:
        self.since = since
        self.pattern = pattern
        self.most = most
        self.matched = 0

    def wanted(self, when: float | None, line: str) -> bool:
        """Whether an entry at `when` reading `line` passes (no time: fails `--since`)."""
        if self.since is not None and (when is None or when < self.since):
            return False
        return self.pattern is None or self.pattern.search(line) is not None

    def keep_entries(self, lines: Iterable[tuple[str, LogEntry]], *,
                     newest_first: bool = False) -> list[LogEntry]:
        """The newest `most` entries that pass, oldest first. A newest-first source is read
        only until `most` passed, so `matched` counts as far as it was read."""
        kept: deque[LogEntry] = deque(maxlen=self.most)
        for line, entry in lines:
            if not self.wanted(entry.time, line):
                continue
            self.matched += 1
            kept.append(entry)
            if newest_first and len(kept) == self.most:
                break
        return list(reversed(kept)) if newest_first else list(kept)


def journal_present(root: Path) -> bool:
    """Whether journald keeps files under `root` and journalctl is here to read them."""
    if not any(_has_journal_files(root / d) for d in JOURNAL_DIRS):
        return False
    return any(os.access(Path(d) / "journalctl", os.X_OK)
               for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d)


def read_journal(root: Path, since: float | None) -> Iterator[tuple[str, LogEntry]]:
    """The journal's entries newest first, as (searchable line, entry); journalctl is stopped
    as soon as the caller has what it needs."""
    argv = ["journalctl", "--output=json", "--all", "--no-pager", "--reverse"]
    if since is not None:
        argv.append(f"--since=@{int(since)}")
    if os.path.realpath(root) != "/":
        directory = next((root / d for d in JOURNAL_DIRS if _has_journal_files(root / d)),
                         None)
        if directory is None:
            raise PathNotFoundError(f"no journal files under {root}",
                                    hint="try --source syslog or --source auth")
        argv += ["--directory", str(directory)]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise UnsupportedOnEndpointError(f"journalctl could not be run: {exc}",
                                         hint="try --source syslog or --source auth") from None
    deadline = time.monotonic() + JOURNALCTL_TIMEOUT_S
    assert proc.stdout is not None
    # A cancel or the command's time limit kills journalctl, ending a read that waits on it.
    with stopped_with_command(proc.kill):
        yield from _journal_entries(proc, deadline)


def _journal_entries(proc: subprocess.Popen[bytes], deadline: float
                     ) -> Iterator[tuple[str, LogEntry]]:
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            entry = parse_journal_line(raw.decode("utf-8", "backslashreplace"))
            if entry is not None:
                yield f"{entry.program or ''} {entry.message}", entry
            if time.monotonic() > deadline:
                break
        else:
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
            if proc.wait(timeout=JOURNALCTL_TIMEOUT_S) != 0:
                raise CommandFailedError(f"journalctl failed: {err.strip()[:300]}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def log_files(root: Path, source: str) -> list[Path]:
    """The first of the source's files that exists, after its rotated `.1` when present."""
    for rel in LOG_FILES[source]:
        current = root / rel
        if current.exists():
            rotated = current.with_name(current.name + ".1")
            return [rotated, current] if rotated.is_file() else [current]
    names = ", ".join("/" + rel for rel in LOG_FILES[source])
    raise PathNotFoundError(f"no {source} log on this endpoint (looked for {names})",
                            hint="it may log to the journal only: try --source journal")


class LogLines:
    """Every line of the files in order, as (line, parsed entry); of a file larger than
    LOG_SCAN_MAX_BYTES only its last part is read (the newest lines), the rest counted."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.skipped_bytes = 0

    def __iter__(self) -> Iterator[tuple[str, LogEntry]]:
        now = datetime.now()
        for path in self.paths:
            with oserrors_mapped(path), path.open("rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                if size > LOG_SCAN_MAX_BYTES:
                    stream.seek(size - LOG_SCAN_MAX_BYTES)
                    # The first line read may be a part of one: it is skipped with the rest.
                    self.skipped_bytes += size - LOG_SCAN_MAX_BYTES + len(stream.readline())
                for raw in stream:
                    line = raw.rstrip(b"\n").decode("utf-8", "backslashreplace")
                    if line:
                        yield line, parse_syslog_line(line, now)


def shown(root: Path, path: Path) -> str:
    """`path` as the endpoint names it (relative to the root)."""
    return "/" + path.relative_to(root).as_posix()


def _has_journal_files(directory: Path) -> bool:
    try:
        return any(name.endswith(".journal")
                   for _dir, _subdirs, files in os.walk(directory) for name in files)
    except OSError:
        return False
