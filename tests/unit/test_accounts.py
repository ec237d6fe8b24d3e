"""`users` and `sessions` on a real test tree: passwd, shadow, group, sudoers, lastlog, wtmp and
utmp files; no password hash ever reaches a result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.commands.accounts import SessionsArgs, UserAccount, UsersArgs
from tasks.errors import PathNotFoundError
from tests.login_files import DEAD_PROCESS, USER_PROCESS, Login, write_lastlog, write_utmp
from tests.privilege import run_as_nobody
from worker_agent.accounts import run_sessions, run_users
from worker_agent.context import CommandContext

HASH = "$6$rounds=5000$saltsalt$Xq0q1pkyHASHVALUE0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
carol:x:1002:100::/home/carol:/bin/zsh
eve:x:1003:1003::/home/eve:/bin/bash
legacy::1004:1004::/home/legacy:/bin/sh
"""
SHADOW = f"""root:{HASH}:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
alice:{HASH}:19000:0:99999:7:::
bob:!{HASH}:19000:0:99999:7:::
carol::19000:0:99999:7:::
eve:!:19000:0:99999:7:::
"""
GROUP = """root:x:0:
users:x:100:
sudo:x:27:alice
alice:x:1000:
bob:x:1001:
eve:x:1003:
ops:x:2000:bob,carol
"""
SUDOERS = """Defaults env_reset
root ALL=(ALL:ALL) ALL
%sudo ALL=(ALL:ALL) ALL
# eve ALL=(ALL) NOPASSWD: ALL
@includedir /etc/sudoers.d
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    (etc / "sudoers.d").mkdir(parents=True)
    for name, text in (("passwd", PASSWD), ("shadow", SHADOW), ("group", GROUP),
                       ("sudoers", SUDOERS)):
        (etc / name).write_text(text)
    (etc / "shadow").chmod(0o640)
    (etc / "sudoers.d/ops").write_text("%ops ALL=(root) /usr/bin/systemctl\n")
    (etc / "sudoers.d/eve").write_text("eve, mallory ALL=(ALL) NOPASSWD: ALL\n")
    (etc / "sudoers.d/README.txt").write_text("alice ALL=(ALL) ALL\n")  # sudo skips names with .
    write_lastlog(tmp_path / "var/log/lastlog", {1000: (1772356502, "pts/0", "203.0.113.9")})
    write_utmp(tmp_path / "var/log/wtmp", [
        Login(USER_PROCESS, 10, "pts/1", "bob", "198.51.100.4", 1772300000),
        Login(USER_PROCESS, 11, "pts/2", "bob", "198.51.100.5", 1772310000),
        Login(USER_PROCESS, 12, "pts/3", "alice", "192.0.2.1", 1772000000)])
    return tmp_path


def users(root: Path) -> dict[str, UserAccount]:
    ctx = CommandContext(device_id="dev-users", settings=Settings(system_root=root))
    result = run_users(UsersArgs(), ctx)
    assert HASH not in result.model_dump_json() and "$6$" not in result.model_dump_json()
    return {u.name: u for u in result.users}


def test_password_status_is_told_without_the_hash(root: Path) -> None:
    found = users(root)
    statuses = {name: u.password for name, u in found.items()}
    assert statuses == {"root": "has-password", "daemon": "locked", "alice": "has-password",
                        "bob": "locked", "carol": "no-password", "eve": "locked",
                        "legacy": "no-password"}


def test_groups_and_sudo_rights_say_where_they_come_from(root: Path) -> None:
    found = users(root)
    alice, bob, carol, eve, daemon = (found[n] for n in ("alice", "bob", "carol", "eve",
                                                         "daemon"))
    assert alice.groups == ["alice", "sudo"]
    assert alice.sudo_via == ["group sudo", "group sudo in /etc/sudoers"]
    assert bob.sudo_via == ["group ops in /etc/sudoers.d/ops"]
    assert carol.groups == ["ops", "users"]
    assert eve.sudo_via == ["/etc/sudoers.d/eve"]
    assert found["root"].sudo_via == ["/etc/sudoers"]
    assert not daemon.sudo


def test_last_login_from_lastlog_else_the_newest_in_wtmp(root: Path) -> None:
    found = users(root)
    alice, bob = found["alice"], found["bob"]
    assert (alice.last_login, alice.last_login_host) == (1772356502.0, "203.0.113.9")
    assert (bob.last_login, bob.last_login_line) == (1772310000.0, "pts/2")
    assert found["carol"].last_login is None


def test_users_match_getent_style_fields_of_passwd(root: Path) -> None:
    found = users(root)
    for line in PASSWD.splitlines():
        name, _, uid, gid, gecos, home, shell = line.split(":")
        u = found[name]
        assert (u.uid, u.gid, u.gecos, u.home, u.shell) == (int(uid), int(gid), gecos, home,
                                                              shell)


def test_an_unreadable_shadow_is_named_and_statuses_are_unknown(root: Path) -> None:
    # A tree `nobody` can reach (pytest's own directory is root's alone), shadow root-only.
    base = Path(tempfile.mkdtemp(prefix="lr-users-", dir="/tmp"))
    try:
        base.chmod(0o755)
        tree = Path(shutil.copytree(root, base / "root"))
        tree.chmod(0o755)
        (tree / "etc/shadow").chmod(0o600 if os.geteuid() == 0 else 0o000)

        def listing() -> str:
            ctx = CommandContext(device_id="dev-users", settings=Settings(system_root=tree))
            return run_users(UsersArgs(), ctx).model_dump_json()

        result = json.loads(run_as_nobody(listing) if os.geteuid() == 0 else listing())
    finally:
        shutil.rmtree(base)
    assert "/etc/shadow" in result["unreadable"]
    statuses = {u["name"]: u["password"] for u in result["users"]}
    assert statuses.pop("legacy") == "no-password"  # its passwd field says so itself
    assert set(statuses.values()) == {"unknown"}


def test_sessions_list_utmp_logins_as_who_does(root: Path) -> None:
    utmp = write_utmp(root / "run/utmp", [
        Login(USER_PROCESS, 4242, "pts/0", "alice", "203.0.113.9", 1772356502, 0,
              "203.0.113.9"),
        Login(DEAD_PROCESS, 4243, "pts/1", "", "", 1772356600),
        Login(USER_PROCESS, 1, "tty1", "root", "", 1772350000)])
    ctx = CommandContext(device_id="dev-sessions", settings=Settings(system_root=root))
    result = run_sessions(SessionsArgs(), ctx)
    who = subprocess.run(["who", str(utmp)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert sorted([s.user, s.line] for s in result.sessions) == sorted(
        line.split()[:2] for line in who)
    assert result.path == "/run/utmp"
    assert {s.alive for s in result.sessions} == {None}  # not this host's utmp


def test_sessions_without_utmp_say_so(tmp_path: Path) -> None:
    ctx = CommandContext(device_id="dev-sessions", settings=Settings(system_root=tmp_path))
    with pytest.raises(PathNotFoundError, match="no utmp"):
        run_sessions(SessionsArgs(), ctx)


def test_this_hosts_accounts_match_getent_passwd_s_and_id() -> None:
    if os.geteuid() != 0:
        pytest.skip("passwd -S reads /etc/shadow: root only")
    ctx = CommandContext(device_id="dev-users", settings=Settings(system_root=Path("/")))
    found = {u.name: u for u in run_users(UsersArgs(), ctx).users}
    getent = {line.split(":")[0]: int(line.split(":")[2]) for line in subprocess.run(
        ["getent", "passwd"], capture_output=True, text=True, check=True).stdout.splitlines()}
    assert {name: u.uid for name, u in found.items()}.items() <= getent.items()
    status = {"P": "has-password", "L": "locked", "NP": "no-password"}
    shown = subprocess.run(["passwd", "-S", "-a"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for name, code, *_ in (line.split() for line in shown):
        if name in found:
            assert found[name].password == status[code], name
    for name in list(found)[:8]:
        groups = subprocess.run(["id", "-Gn", name], capture_output=True, text=True,
                                check=True).stdout.split()
        assert sorted(found[name].groups) == sorted(g for g in groups if not g.isdigit())
