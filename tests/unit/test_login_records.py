"""wtmp, btmp, utmp and lastlog files written record by record, decoded by the agent and
compared with util-linux's `utmpdump` and `last`, coreutils' `who`, and shadow's `lastlog`."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.commands.logs import LogsArgs
from tests.login_files import (
    BOOT_TIME,
    DEAD_PROCESS,
    USER_PROCESS,
    Login,
    utmp_record,
    write_lastlog,
    write_utmp,
)
from worker_agent.context import CommandContext
from worker_agent.logs import run_logs
from worker_agent.utmp import LASTLOG, UTMP, read_lastlog, read_utmp

LOGINS = [
    Login(BOOT_TIME, 0, "~", "reboot", "6.1.0-28-amd64", 1765000000),
    Login(USER_PROCESS, 4242, "pts/0", "alice", "203.0.113.9", 1765000100, 250000,
          "203.0.113.9", session=17),
    Login(USER_PROCESS, 5151, "pts/1", "bob", "2001:db8::5", 1765000200, 0, "2001:db8::5"),
    Login(DEAD_PROCESS, 4242, "pts/0", "", "", 1765003700),
    Login(USER_PROCESS, 6000, "tty1", "root", "", 1765007000),
]


def tool(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_the_record_layouts_are_glibcs() -> None:
    assert (UTMP.size, LASTLOG.size) == (384, 292)


def test_wtmp_decodes_as_utmpdump_reads_it(tmp_path: Path) -> None:
    wtmp = write_utmp(tmp_path / "wtmp", LOGINS)
    records, leftover = read_utmp(wtmp)
    assert leftover == 0
    dumped = [re.findall(r"\[(.*?)\]", line) for line in tool("utmpdump", str(wtmp)).splitlines()
              if line.startswith("[")]
    assert len(records) == len(dumped) == len(LOGINS)
    for record, (kind, pid, ut_id, user, line, host, addr, when) in zip(records, dumped,
                                                                        strict=True):
        assert int(kind) == {"BOOT_TIME": 2, "USER_PROCESS": 7, "DEAD_PROCESS": 8}[record.type]
        assert (record.pid, record.id, record.user, record.line, record.host) == (
            int(pid), ut_id.strip(), user.strip(), line.strip(), host.strip())
        assert (record.address or "0.0.0.0") == addr.strip()
        stamp = datetime.fromisoformat(when.replace(",", "."))
        assert record.time == pytest.approx(stamp.timestamp(), abs=1e-6)
    assert records[1].session == 17 and records[1].time == 1765000100.25


def test_wtmp_logins_match_last(tmp_path: Path) -> None:
    wtmp = write_utmp(tmp_path / "wtmp", LOGINS)
    records, _ = read_utmp(wtmp)
    out = tool("last", "-f", str(wtmp), "-w", "-i", "--time-format", "iso")
    listed = {(m[0], m[1], m[2]) for m in (line.split() for line in out.splitlines())
              if len(m) > 3 and m[0] in ("alice", "bob", "root")}
    ours = {(r.user, r.line, r.address or "0.0.0.0") for r in records if r.type == "USER_PROCESS"}
    assert ours == listed


def test_utmp_sessions_match_who(tmp_path: Path) -> None:
    utmp = write_utmp(tmp_path / "utmp", LOGINS)
    records, _ = read_utmp(utmp)
    who = [line.split()[:2] for line in tool("who", str(utmp)).splitlines()]
    assert sorted(who) == sorted([r.user, r.line] for r in records
                                 if r.type == "USER_PROCESS" and r.user)


def test_a_torn_last_record_is_counted_not_decoded(tmp_path: Path) -> None:
    wtmp = tmp_path / "wtmp"
    wtmp.write_bytes(utmp_record(LOGINS[1]) + utmp_record(LOGINS[2])[:100])
    records, leftover = read_utmp(wtmp)
    assert [r.user for r in records] == ["alice"] and leftover == 100


def test_lastlog_decodes_a_sparse_file_as_lastlog_shows_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "alice:x:1000:1000::/home/alice:/bin/bash\n"
                                     "svc:x:60000:60000::/srv:/usr/sbin/nologin\n")
    lastlog = write_lastlog(root / "var/log/lastlog", {
        1000: (1765000000, "pts/3", "198.51.100.7"), 60000: (1765001000, "tty1", "")})
    assert os.stat(lastlog).st_blocks * 512 < lastlog.stat().st_size  # really sparse
    entries = read_lastlog(lastlog, {0: "root", 1000: "alice", 60000: "svc"})
    assert [(e.uid, e.user, e.line, e.host, e.time) for e in entries] == [
        (1000, "alice", "pts/3", "198.51.100.7", 1765000000.0),
        (60000, "svc", "tty1", "", 1765001000.0)]
    if os.geteuid() != 0:
        pytest.skip("lastlog --root needs root to chroot")
    shown = tool("lastlog", "--root", str(root))
    for entry in entries:
        row = next(line for line in shown.splitlines() if line.startswith(entry.user or "?"))
        assert entry.line in row and entry.host in row
        assert datetime.fromtimestamp(entry.time).strftime("%b %e %H:%M:%S") in row


def test_logs_reads_wtmp_btmp_and_lastlog_under_the_system_root(tmp_path: Path) -> None:
    write_utmp(tmp_path / "var/log/wtmp", LOGINS)
    write_utmp(tmp_path / "var/log/btmp", [
        Login(6, 999, "ssh:notty", "admin", "192.0.2.66", 1765000500 + i, 0, "192.0.2.66")
        for i in range(5)])
    write_lastlog(tmp_path / "var/log/lastlog", {0: (1765000050, "tty1", "")})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    ctx = CommandContext(device_id="dev-logs", settings=Settings(system_root=tmp_path))
    wtmp = run_logs(LogsArgs(source="wtmp", grep="alice|bob"), ctx)
    assert [x.user for x in wtmp.logins] == ["alice", "bob"] and wtmp.paths == ["/var/log/wtmp"]
    btmp = run_logs(LogsArgs(source="btmp", max=2, since="@1765000502"), ctx)
    assert [x.time for x in btmp.logins] == [1765000503.0, 1765000504.0] and btmp.matched == 3
    assert btmp.logins[0].type == "LOGIN_PROCESS"
    lastlog = run_logs(LogsArgs(source="lastlog"), ctx)
    assert [(e.user, e.line) for e in lastlog.lastlog] == [("root", "tty1")]
