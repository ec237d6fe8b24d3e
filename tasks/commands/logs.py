"""Arguments and results of `logs`: the journal, the classic syslog files, and the login records
(wtmp, btmp, lastlog) decoded."""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import Field, field_validator

from tasks.commands.base import CommandArgs, CommandResult
from tasks.times import parse_point_in_time

#: Where `logs` reads: journald, the auth or system log file, the login records.
LogSource = Literal["journal", "auth", "syslog", "wtmp", "btmp", "lastlog"]
#: Entries `logs` returns unless told otherwise, and the most it returns.
LOGS_DEFAULT_MAX = 200
LOGS_MAX = 10_000


class LogsArgs(CommandArgs):
    #: None: the journal where the endpoint keeps one, else the system log file.
    source: LogSource | None = None
    #: Only entries at or after this time (see tasks/times.py).
    since: str | None = None
    #: Only entries matching this regular expression (Python syntax), anywhere in the line.
    grep: str | None = Field(default=None, min_length=1)
    #: The newest this many matching entries.
    max: int = Field(default=LOGS_DEFAULT_MAX, ge=1, le=LOGS_MAX)

    @field_validator("since")
    @classmethod
    def _since_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_point_in_time(value, time.time())
        return value

    @field_validator("grep")
    @classmethod
    def _grep_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc}): {value!r}") from None
        return value


class LogEntry(CommandResult):
    """One line of a log (a file's or the journal's), parsed."""

    #: Epoch seconds; None when the line carries no time we read.
    time: float | None = None
    host: str | None = None
    program: str | None = None
    pid: int | None = None
    message: str


class LoginRecord(CommandResult):
    """One `struct utmp` record of wtmp, btmp or utmp, decoded."""

    #: ut_type by name: USER_PROCESS, DEAD_PROCESS, BOOT_TIME, LOGIN_PROCESS, ...
    type: str
    pid: int
    #: Terminal (ut_line), e.g. pts/0; ut_id is the line's short id.
    line: str
    id: str
    user: str
    host: str
    #: Exit of a DEAD_PROCESS (ut_exit).
    exit_termination: int = 0
    exit_status: int = 0
    session: int = 0
    #: Epoch seconds (ut_tv).
    time: float
    #: Remote address (ut_addr_v6) when recorded.
    address: str | None = None


class LastlogEntry(CommandResult):
    """A user's last login as /var/log/lastlog keeps it (one slot per uid)."""

    uid: int
    #: The account name from the endpoint's passwd, when it names the uid.
    user: str | None = None
    time: float
    line: str
    host: str


class LogsResult(CommandResult):
    source: LogSource
    #: Files read (as the endpoint names them), or `journalctl` for the journal.
    paths: list[str]
    #: journal, auth, syslog: parsed lines, oldest first.
    entries: list[LogEntry] = Field(default_factory=list)
    #: wtmp, btmp: login records, oldest first.
    logins: list[LoginRecord] = Field(default_factory=list)
    #: lastlog: one entry per uid that ever logged in.
    lastlog: list[LastlogEntry] = Field(default_factory=list)
    #: Entries that matched; only the newest `max` of them are returned.
    matched: int = 0
    #: Bytes at the start of a large log file left unread (only its newest part is read).
    skipped_bytes: int = 0
    #: Bytes at the end of a login file too short for a whole record (a torn write).
    trailing_bytes: int = 0
