"""Arguments and results of the account commands: users and sessions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.commands.base import CommandArgs, CommandResult

#: What an account's password field says; the hash itself never leaves the endpoint.
PasswordStatus = Literal["locked", "no-password", "has-password", "unknown"]


class UsersArgs(CommandArgs):
    pass


class UserAccount(CommandResult):
    name: str
    uid: int
    gid: int
    #: Name of the primary group, when etc/group names it.
    group: str | None = None
    gecos: str = ""
    home: str
    shell: str
    #: From shadow (or passwd when not shadowed); "unknown" when shadow could not be read.
    password: PasswordStatus
    #: Every group the account is in: the primary one and those listing it.
    groups: list[str] = Field(default_factory=list)
    #: May use sudo: in a sudo group, or named (itself or by %group) in sudoers.
    sudo: bool = False
    #: Why: "group sudo", "/etc/sudoers.d/ops", ...
    sudo_via: list[str] = Field(default_factory=list)
    #: Last login (lastlog, else the newest login of the account in wtmp).
    last_login: float | None = None
    last_login_line: str | None = None
    last_login_host: str | None = None


class UsersResult(CommandResult):
    users: list[UserAccount]
    #: Files that exist but could not be read (shadow without root, a sudoers.d file).
    unreadable: list[str] = Field(default_factory=list)


class SessionsArgs(CommandArgs):
    pass


class LoginSession(CommandResult):
    user: str
    #: Terminal (pts/0, tty1) and the remote host, as utmp records them.
    line: str
    host: str
    #: Epoch seconds of the login.
    login_time: float
    pid: int
    address: str | None = None
    #: Whether the session's process still runs (None when the utmp read is not this host's).
    alive: bool | None = None


class SessionsResult(CommandResult):
    #: The utmp file read (as the endpoint names it).
    path: str
    sessions: list[LoginSession]
