"""Parsers of log lines: the classic syslog file formats and journalctl's JSON export."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from tasks.commands.logs import LogEntry

#: `Mar  1 14:02:11 host rest` (RFC 3164, rsyslog's traditional format: no year, local time).
_BSD = re.compile(r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d{2}:\d{2}:\d{2}) "
                  r"(?P<host>\S+) (?P<rest>.*)")
#: `2026-03-01T14:02:11.123456+00:00 host rest` (rsyslog's high-precision format).
_ISO = re.compile(r"(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?"
                  r"(?:Z|[+-]\d{2}:?\d{2})?) (?P<host>\S+) (?P<rest>.*)")
#: `program[pid]: message` or `program: message`.
_TAG = re.compile(r"(?P<program>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?: ?(?P<message>.*)")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def parse_syslog_line(line: str, now: datetime) -> LogEntry:
    """One line of a syslog file; a line in no known format is kept whole as the message.

    RFC 3164 lines carry no year: the one that puts the line no later than a day after `now`
    (a naive local time, as the file's times are).
    """
    bsd = _BSD.fullmatch(line)
    iso = None if bsd else _ISO.fullmatch(line)
    match = bsd or iso
    if match is None:
        return LogEntry(message=line)
    when = _bsd_time(bsd, now) if bsd else _iso_time(match.group("iso"))
    tag = _TAG.fullmatch(match.group("rest"))
    if tag is None:
        return LogEntry(time=when, host=match.group("host"), message=match.group("rest"))
    pid = tag.group("pid")
    return LogEntry(time=when, host=match.group("host"), program=tag.group("program"),
                    pid=int(pid) if pid else None, message=tag.group("message"))


def _bsd_time(match: re.Match[str], now: datetime) -> float | None:
    month = _MONTHS.get(match.group("mon"))
    if month is None:
        return None
    hour, minute, second = (int(x) for x in match.group("hms").split(":"))
    for year in (now.year, now.year - 1):
        try:
            when = datetime(year, month, int(match.group("day")), hour, minute, second)
        except ValueError:  # Feb 29 of a year without one
            continue
        if when <= now + timedelta(days=1):
            return when.timestamp()
    return None


def _iso_time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_journal_line(line: str) -> LogEntry | None:
    """One entry of `journalctl --output=json`; None for a line that is not an entry."""
    try:
        fields = json.loads(line)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    micros = str(fields.get("__REALTIME_TIMESTAMP"))
    pid = _field(fields, "_PID") or _field(fields, "SYSLOG_PID")
    return LogEntry(
        time=int(micros) / 1_000_000 if micros.isdigit() else None,
        host=_field(fields, "_HOSTNAME"),
        program=_field(fields, "SYSLOG_IDENTIFIER") or _field(fields, "_COMM"),
        pid=int(pid) if pid and pid.isdigit() else None,
        message=_field(fields, "MESSAGE") or "")


def _field(fields: dict[str, Any], name: str) -> str | None:
    # journalctl writes a field that is not valid UTF-8 as an array of byte values, and a
    # field that occurs several times as an array of those.
    value = fields.get(name)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return bytes(v & 0xFF for v in value).decode("utf-8", "backslashreplace")
    if isinstance(value, list) and value:
        return _field({name: value[0]}, name)
    return value if isinstance(value, str) else None
