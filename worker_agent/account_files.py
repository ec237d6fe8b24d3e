"""Readers of the account files under a root: passwd, group, shadow (status only) and sudoers.

A password hash is never returned by anything here: shadow is reduced to a status the moment
a line is split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tasks.commands.accounts import PasswordStatus

#: Groups whose members may use sudo on common distributions (Debian: sudo, admin; RHEL: wheel).
SUDO_GROUPS = ("sudo", "wheel", "admin")
#: Largest account file read (a passwd of 100,000 accounts is about 8 MiB).
ACCOUNT_FILE_MAX_BYTES = 32 * 1024 * 1024
#: sudoers keywords that start a line which is not a user specification.
_SUDOERS_KEYWORDS = ("Defaults", "User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias",
                     "Cmd_Alias")


@dataclass(frozen=True)
class PasswdEntry:
    """One line of passwd, without its password field."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str
    #: The passwd password field said "x" (look in shadow) or something else.
    shadowed: bool
    #: The status read from passwd itself when the account is not shadowed.
    passwd_status: PasswordStatus


@dataclass
class Sudoers:
    """Who the sudoers files name: users and %groups with a rule, and where."""

    users: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    #: Files that exist but could not be read.
    unreadable: list[str] = field(default_factory=list)


def read_text(path: Path) -> str:
    """A small text file (bytes not UTF-8 escaped); OSError for the caller."""
    with path.open("rb") as stream:
        return stream.read(ACCOUNT_FILE_MAX_BYTES).decode("utf-8", "backslashreplace")


def password_status(field_value: str) -> PasswordStatus:
    """What a password field means: empty is no password, `!`/`*` locked, else a hash."""
    if field_value == "":
        return "no-password"
    if field_value.startswith(("!", "*")):
        return "locked"
    return "has-password"


def read_passwd(root: Path) -> list[PasswdEntry]:
    """The accounts of `root`'s etc/passwd (malformed lines skipped)."""
    entries = []
    for line in read_text(root / "etc/passwd").splitlines():
        parts = line.split(":")
        if len(parts) < 7 or not parts[2].isdigit() or not parts[3].isdigit():
            continue
        secret = parts[1]
        entries.append(PasswdEntry(
            name=parts[0], uid=int(parts[2]), gid=int(parts[3]), gecos=parts[4],
            home=parts[5], shell=parts[6], shadowed=secret == "x",
            passwd_status=password_status(secret)))
    return entries


def user_names(root: Path) -> dict[int, str]:
    """uid → first account name with it; empty when passwd cannot be read."""
    try:
        entries = read_passwd(root)
    except OSError:
        return {}
    names: dict[int, str] = {}
    for entry in entries:
        names.setdefault(entry.uid, entry.name)
    return names


def read_shadow_status(root: Path) -> dict[str, PasswordStatus]:
    """Account name → password status from `root`'s etc/shadow (the hash dropped at once)."""
    statuses: dict[str, PasswordStatus] = {}
    for line in read_text(root / "etc/shadow").splitlines():
        name, _, rest = line.partition(":")
        if name and rest:
            statuses[name] = password_status(rest.split(":", 1)[0])
    return statuses


def read_groups(root: Path) -> tuple[dict[int, str], dict[str, list[str]]]:
    """(gid → group name, group name → its listed members) from `root`'s etc/group."""
    names: dict[int, str] = {}
    members: dict[str, list[str]] = {}
    for line in read_text(root / "etc/group").splitlines():
        parts = line.split(":")
        if len(parts) < 4 or not parts[2].isdigit():
            continue
        names.setdefault(int(parts[2]), parts[0])
        members[parts[0]] = [m for m in parts[3].split(",") if m]
    return names, members


def read_sudoers(root: Path) -> Sudoers:
    """The users and %groups that etc/sudoers and etc/sudoers.d/* give a rule to.

    Aliases are not expanded (a User_Alias member is not reported); files sudo skips in
    sudoers.d (names with a dot or ending in ~) are skipped too.
    """
    found = Sudoers()
    files = [root / "etc/sudoers"]
    try:
        with os.scandir(root / "etc/sudoers.d") as listing:
            files += sorted(Path(e.path) for e in listing
                            if "." not in e.name and not e.name.endswith("~") and e.is_file())
    except OSError:
        pass
    for path in files:
        shown = "/" + path.relative_to(root).as_posix()
        try:
            text = read_text(path)
        except FileNotFoundError:
            continue
        except OSError:
            found.unreadable.append(shown)
            continue
        for who in _rule_subjects(text):
            if who.startswith("%"):
                found.groups.setdefault(who[1:], []).append(shown)
            else:
                found.users.setdefault(who, []).append(shown)
    return found


def _rule_subjects(text: str) -> list[str]:
    """The user list of each user specification line (`alice,%ops ALL=(ALL) ALL`)."""
    subjects: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "@")) or line.startswith(_SUDOERS_KEYWORDS):
            continue
        before, eq, _ = line.partition("=")
        words = before.split()
        if not eq or len(words) < 2:
            continue
        # `User_List Host_List =`: the host list is the last word.
        users = "".join(words[:-1]).split(",")
        subjects += [u for u in users if u and u != "ALL"]
    return subjects
