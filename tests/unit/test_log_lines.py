"""`logs` on real syslog files of a test tree: both rsyslog formats parsed, rotation, --grep,
--since, --max, journal JSON; bad arguments are usage errors."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.commands.logs import LogsArgs, LogsResult
from tasks.errors import PathNotFoundError, UsageError
from tasks.parsing import parse_line
from tasks.times import parse_point_in_time
from worker_agent.context import CommandContext
from worker_agent.log_lines import parse_journal_line, parse_syslog_line
from worker_agent.logs import run_logs

NOW = datetime(2026, 3, 1, 12, 0, 0)
AUTH_OLD = ("Feb 28 23:59:58 web1 sshd[811]: Failed password for invalid user admin from "
            "192.0.2.66 port 50122 ssh2\n")
AUTH = ("2026-03-01T09:15:02.123456+00:00 web1 sshd[901]: Accepted publickey for alice from "
        "203.0.113.9 port 50211 ssh2\n"
        "2026-03-01T09:16:40+00:00 web1 sudo: alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ;"
        " COMMAND=/bin/bash\n"
        "a line in no format at all\n"
        "2026-03-01T10:00:00+00:00 web1 CRON[1000]: pam_unix(cron:session): session opened\n")


def test_a_traditional_line_is_parsed_with_the_year_that_keeps_it_in_the_past() -> None:
    entry = parse_syslog_line(AUTH_OLD.rstrip("\n"), NOW)
    assert (entry.host, entry.program, entry.pid) == ("web1", "sshd", 811)
    assert entry.message.startswith("Failed password for invalid user admin")
    assert entry.time == datetime(2026, 2, 28, 23, 59, 58).timestamp()
    december = parse_syslog_line("Dec 31 23:00:00 web1 kernel: x", NOW)
    assert december.time == datetime(2025, 12, 31, 23, 0, 0).timestamp()


def test_a_high_precision_line_keeps_its_zone_and_fraction() -> None:
    entry = parse_syslog_line(AUTH.splitlines()[0], NOW)
    assert entry.time == pytest.approx(1772356502.123456)
    assert (entry.program, entry.pid) == ("sshd", 901)


def test_lines_without_a_pid_or_a_format_are_kept() -> None:
    sudo = parse_syslog_line(AUTH.splitlines()[1], NOW)
    assert (sudo.program, sudo.pid) == ("sudo", None)
    assert sudo.message.startswith("alice : TTY=pts/0")
    other = parse_syslog_line("a line in no format at all", NOW)
    assert (other.time, other.program, other.message) == (None, None,
                                                          "a line in no format at all")


def test_journal_json_entries_including_binary_fields() -> None:
    line = json.dumps({"__REALTIME_TIMESTAMP": "1772356502123456", "_HOSTNAME": "web1",
                       "SYSLOG_IDENTIFIER": "sshd", "_PID": "901",
                       "MESSAGE": list(b"bad \xff byte")})
    entry = parse_journal_line(line)
    assert entry is not None
    assert (entry.time, entry.host, entry.program, entry.pid) == (1772356502.123456, "web1",
                                                                  "sshd", 901)
    assert entry.message == "bad \\xff byte"
    assert parse_journal_line("-- No entries --") is None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    log = tmp_path / "var/log"
    log.mkdir(parents=True)
    (log / "auth.log.1").write_text(AUTH_OLD)
    (log / "auth.log").write_text(AUTH)
    (log / "messages").write_text("Mar  1 08:00:00 web1 kernel: Linux version 6.1\n")
    return tmp_path


def logs(root: Path, **args: object) -> LogsResult:
    ctx = CommandContext(device_id="dev-logs", settings=Settings(system_root=root))
    return run_logs(LogsArgs.model_validate(args), ctx)


def test_auth_reads_the_rotated_file_first_and_names_both(root: Path) -> None:
    result = logs(root, source="auth")
    assert result.paths == ["/var/log/auth.log.1", "/var/log/auth.log"]
    programs = [e.program for e in result.entries]
    assert programs == ["sshd", "sshd", "sudo", None, "CRON"]


def test_grep_since_and_max_pick_the_newest_matches(root: Path) -> None:
    grep = logs(root, source="auth", grep=r"sshd\[\d+\]")
    assert [e.pid for e in grep.entries] == [811, 901]
    since = logs(root, source="auth", since="@1772356600")
    assert [e.program for e in since.entries] == ["sudo", "CRON"]
    newest = logs(root, source="auth", max=2)
    assert newest.matched == 5
    assert [e.program for e in newest.entries] == [None, "CRON"]


def test_syslog_falls_back_to_messages_and_the_journal_is_not_guessed(root: Path) -> None:
    result = logs(root)
    assert result.source == "syslog"
    assert result.paths == ["/var/log/messages"]


def test_a_missing_log_names_the_files_looked_for(tmp_path: Path) -> None:
    with pytest.raises(PathNotFoundError, match="/var/log/auth.log, /var/log/secure"):
        logs(tmp_path, source="auth")


def test_since_takes_durations_local_times_and_epochs() -> None:
    now = 1772366400.0
    assert parse_point_in_time("2h", now) == now - 7200
    assert parse_point_in_time("@1772356600", now) == 1772356600.0
    assert parse_point_in_time("2026-03-01 09:00", now) == datetime(2026, 3, 1, 9, 0).timestamp()


@pytest.mark.parametrize(("line", "problem"), [
    ("logs --grep '(unclosed'", "not a regular expression"),
    ("logs --since yesterday-ish", "invalid time 'yesterday-ish'"),
    ("logs --source kmsg", "bad value for source"),
    ("logs --max 0", "greater than or equal to 1"),
])
def test_bad_logs_arguments_are_usage_errors(line: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_line(line)
    assert problem in caught.value.message
    assert caught.value.hint is not None and caught.value.hint.startswith("usage: logs")


def test_a_huge_log_is_read_from_its_newest_part(root: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker_agent.logs.LOG_SCAN_MAX_BYTES", 200)
    result = logs(root, source="auth")
    # auth.log.1 (one line) fits; auth.log is cut to its last 200 bytes, from a whole line.
    assert result.skipped_bytes > len(AUTH) - 200
    assert [e.program for e in result.entries] == ["sshd", None, "CRON"]
    assert result.entries[-1].message.endswith("session opened")


def test_the_journal_of_a_root_without_journal_files_is_refused(root: Path) -> None:
    with pytest.raises(PathNotFoundError, match="no journal files under"):
        logs(root, source="journal")


def test_journal_files_under_the_root_make_journalctl_the_default(root: Path) -> None:
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl is not installed here")
    journal = root / "var/log/journal/0123456789abcdef"
    journal.mkdir(parents=True)
    # Not a journal journalctl can read: it runs, skips it, and has no entries to give.
    (journal / "system.journal").write_bytes(b"LPKSHHRH" + bytes(4096))
    result = logs(root)
    assert (result.source, result.paths, result.entries) == ("journal", ["journalctl"], [])
