"""Handlers of `users` (accounts, password status, groups, sudo rights, last login) and
`sessions` (who is logged in, from utmp), read under `settings.system_root`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tasks.commands.accounts import (
    LoginSession,
    SessionsArgs,
    SessionsResult,
    UserAccount,
    UsersArgs,
    UsersResult,
)
from tasks.commands.logs import LoginRecord
from tasks.errors import PathNotFoundError
from worker_agent import account_files as af
from worker_agent.context import CommandContext
from worker_agent.filesystem import oserrors_mapped
from worker_agent.utmp import read_lastlog, read_utmp

#: Where utmp is, newest convention first.
UTMP_FILES = ("run/utmp", "var/run/utmp")
WTMP_FILE = "var/log/wtmp"
LASTLOG_FILE = "var/log/lastlog"


def run_users(args: UsersArgs, ctx: CommandContext) -> UsersResult:
    """Every account of etc/passwd with what an analyst asks of it first."""
    root = ctx.system_root("users")
    with oserrors_mapped("/etc/passwd"):
        entries = af.read_passwd(root)
    unreadable: list[str] = []
    statuses: dict[str, af.PasswordStatus] = {}
    try:
        statuses = af.read_shadow_status(root)
    except FileNotFoundError:
        pass
    except OSError:
        unreadable.append("/etc/shadow")
    group_names: dict[int, str] = {}
    members: dict[str, list[str]] = {}
    try:
        group_names, members = af.read_groups(root)
    except FileNotFoundError:
        pass
    except OSError:
        unreadable.append("/etc/group")
    sudoers = af.read_sudoers(root)
    unreadable += sudoers.unreadable
    last = last_logins(root, {e.uid: e.name for e in entries}, unreadable)
    users = []
    for entry in entries:
        primary = group_names.get(entry.gid)
        groups = sorted({*([primary] if primary else []),
                         *(g for g, names in members.items() if entry.name in names)})
        via = [f"group {g}" for g in groups if g in af.SUDO_GROUPS]
        via += [f"group {g} in {f}" for g in groups for f in sudoers.groups.get(g, [])]
        via += sudoers.users.get(entry.name, [])
        status = statuses.get(entry.name, "unknown") if entry.shadowed else entry.passwd_status
        seen = last.get(entry.name)
        users.append(UserAccount(
            name=entry.name, uid=entry.uid, gid=entry.gid, group=primary, gecos=entry.gecos,
            home=entry.home, shell=entry.shell, password=status, groups=groups,
            sudo=bool(via), sudo_via=via,
            last_login=seen.time if seen else None, last_login_line=seen.line if seen else None,
            last_login_host=seen.host if seen else None))
    return UsersResult(users=users, unreadable=unreadable)


class LastSeen:
    """Where and when an account last logged in."""

    def __init__(self, time: float, line: str, host: str) -> None:
        self.time, self.line, self.host = time, line, host


def last_logins(root: Path, names: dict[int, str], unreadable: list[str]) -> dict[str, LastSeen]:
    """Account name → its last login: lastlog's slot, or else its newest wtmp login."""
    seen: dict[str, LastSeen] = {}
    try:
        records, _ = read_utmp(root / WTMP_FILE)
    except FileNotFoundError:
        records = []
    except OSError:
        records = []
        unreadable.append("/" + WTMP_FILE)
    for record in records:
        if record.type == "USER_PROCESS" and record.user:
            prior = seen.get(record.user)
            if prior is None or record.time >= prior.time:
                seen[record.user] = LastSeen(record.time, record.line, record.host)
    try:
        slots = read_lastlog(root / LASTLOG_FILE, names)
    except FileNotFoundError:
        slots = []
    except OSError:
        slots = []
        unreadable.append("/" + LASTLOG_FILE)
    for slot in slots:
        if slot.user is not None:
            seen[slot.user] = LastSeen(slot.time, slot.line, slot.host)
    return seen


def run_sessions(args: SessionsArgs, ctx: CommandContext) -> SessionsResult:
    """The users logged in now: utmp's USER_PROCESS records, as `who` lists them."""
    root = ctx.system_root("sessions")
    path = next((root / rel for rel in UTMP_FILES if (root / rel).exists()), None)
    if path is None:
        raise PathNotFoundError(
            "no utmp on this endpoint (looked for /run/utmp, /var/run/utmp)",
            hint="nothing records logins here (a container?); see 'processes' and 'logs'")
    with oserrors_mapped("/" + path.relative_to(root).as_posix()):
        records, _ = read_utmp(path)
    live = os.path.realpath(root) == "/"
    sessions = [session_of(r, live) for r in records if r.type == "USER_PROCESS" and r.user]
    return SessionsResult(path="/" + path.relative_to(root).as_posix(), sessions=sessions)


def session_of(record: LoginRecord, live: bool) -> LoginSession:
    """A utmp login as a session; whether its process runs only when utmp is this host's."""
    alive = None
    if live and record.pid > 0:
        alive = os.path.exists(f"/proc/{record.pid}") if sys.platform == "linux" else None
    return LoginSession(user=record.user, line=record.line, host=record.host,
                        login_time=record.time, pid=record.pid, address=record.address,
                        alive=alive)

