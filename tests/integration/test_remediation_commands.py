"""remediate, undo, kill --tree, persistence and services through API → pipeline → real agent."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from config.settings import Settings
from tasks.signing import KeyPair
from tests.privilege import NOBODY
from tests.stack import Stack, completed, new_device_id, own_prefix_stack

EVIL_CRON = "* * * * * root /tmp/.x/beacon\n"
EVIL_UNIT = "[Service]\nExecStart=/opt/.hidden/implant --daemon\n\n[Install]\n" \
            "WantedBy=multi-user.target\n"


class Endpoint:
    """The planted places one agent is configured with: its vault, deny list and root."""

    def __init__(self, base: Path) -> None:
        self.vault = base / "vault"
        self.denied = base / "protected"
        self.root = base / "root"
        self.denied.mkdir()
        for rel, text in [("etc/cron.d/evil", EVIL_CRON),
                          ("etc/systemd/system/implant.service", EVIL_UNIT),
                          ("root/.ssh/authorized_keys", "ssh-rsa AAAAB3Nza intruder@x\n"),
                          ("etc/ld.so.preload", "/lib/x86_64-linux-gnu/libsneaky.so\n")]:
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_text(text)
        wants = self.root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir()
        (wants / "implant.service").symlink_to("/etc/systemd/system/implant.service")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    return Endpoint(tmp_path_factory.mktemp("endpoint"))


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair,
          endpoint: Endpoint) -> Iterator[Stack]:
    """API + one agent whose vault, deny list and persistence root are the test's own."""
    with own_prefix_stack(redis_url, [new_device_id("rem")],
                          tmp_path_factory.mktemp("agents"), signing=signing_keys,
                          quarantine_dir=endpoint.vault, persistence_root=endpoint.root,
                          remediate_deny_paths=[*Settings().remediate_deny_paths,
                                                str(endpoint.denied)]) as st:
        yield st


@pytest.fixture
def session(stack: Stack) -> str:
    return stack.open_session(next(iter(stack.agents)))


def failed(body: dict[str, Any], code: str) -> dict[str, Any]:
    assert body.get("status") == "failed", body
    assert body["error"]["code"] == code, body
    return dict(body["error"])


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def snapshot(path: Path) -> tuple[int, int, int, int, int, str]:
    st = os.lstat(path)  # stat before reading: a read may move the atime
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_size, sha256sum(path))


def test_remediate_then_undo_gives_back_identical_bytes_and_metadata(
        stack: Stack, session: str, endpoint: Endpoint, tmp_path: Path) -> None:
    suspect = tmp_path / "invoice2025.exe"
    suspect.write_bytes(os.urandom(5 * 1024 * 1024 + 1))
    os.chown(suspect, NOBODY, NOBODY)
    os.chmod(suspect, 0o750)
    os.utime(suspect, ns=(1_600_000_000_000_000_001, 1_500_000_000_000_000_003))
    before = snapshot(suspect)
    taken = completed(stack.run(session, f"remediate {suspect}"))
    assert not os.path.lexists(suspect)
    assert taken["sha256"] == before[-1] and taken["path"] == str(suspect)
    assert stat.S_IMODE(os.stat(endpoint.vault).st_mode) == 0o700
    assert sha256sum(endpoint.vault / taken["qid"] / "content") == before[-1]
    restored = completed(stack.run(session, f"undo {taken['qid']}"))
    assert restored["restored"] and restored["owner_restored"]
    assert snapshot(suspect) == before
    assert not (endpoint.vault / taken["qid"]).exists()


def test_a_tree_needs_recursive_then_comes_back_identical(
        stack: Stack, session: str, tmp_path: Path) -> None:
    tree = tmp_path / "dropper"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "x").write_bytes(os.urandom(70_000))
    (tree / "run.sh").write_text("#!/bin/sh\n./bin/x\n")
    (tree / "link").symlink_to("bin/x")
    before = {p: snapshot(tree / p) for p in ("bin/x", "run.sh")}
    failed(stack.run(session, f"remediate {tree}"), "is_a_directory")
    assert (tree / "run.sh").exists()
    taken = completed(stack.run(session, f"remediate {tree} --recursive"))
    assert taken["files"] == 5 and not tree.exists()
    completed(stack.run(session, f"undo {taken['qid']}"))
    assert {p: snapshot(tree / p) for p in before} == before
    assert os.readlink(tree / "link") == "bin/x"


def test_force_by_an_advanced_user_is_403_naming_admin_audited_and_nothing_moves(
        stack: Stack, endpoint: Endpoint) -> None:
    tool = endpoint.denied / "tool"
    tool.write_text("system tool")
    device = next(iter(stack.agents))
    token = stack.user("adv-forcer", ["advanced"])
    session = stack.open_session(device, token=token)
    failed(stack.run(session, f"remediate {tool}", token=token), "protected_path")
    with stack.client(token) as http:
        resp = http.post(f"/sessions/{session}/commands",
                         json={"line": f"remediate {tool} --force"})
    assert resp.status_code == 403, resp.text
    assert "'admin'" in resp.json()["error"]["message"]
    denied = [e for e in stack.plane.audit.read(actor="adv-forcer")
              if e.action == "command.denied"]
    assert denied and denied[-1].details["reason"] == "permission_denied"
    assert tool.read_text() == "system tool"


def test_force_by_an_admin_goes_past_the_deny_list(stack: Stack, session: str,
                                                    endpoint: Endpoint) -> None:
    tool = endpoint.denied / "forced"
    tool.write_text("to take")
    taken = completed(stack.run(session, f"remediate {tool} --force"))
    assert taken["forced"] and not tool.exists()
    completed(stack.run(session, f"undo {taken['qid']}"))
    assert tool.read_text() == "to take"


def test_usr_bin_env_is_refused_by_default(stack: Stack, session: str) -> None:
    error = failed(stack.run(session, "remediate /usr/bin/env"), "protected_path")
    assert "--force" in error["message"]
    assert os.path.exists("/usr/bin/env")


def test_undo_of_unknown_or_malformed_qid_is_a_clear_error(stack: Stack, session: str) -> None:
    error = failed(stack.run(session, "undo Q00000000beef"), "unknown_quarantine_id")
    assert "Q00000000beef" in error["message"]
    body = stack.run(session, "undo ../../etc/passwd")
    assert body["error"]["code"] == "usage" and "qid" in body["error"]["message"]


def test_undo_onto_a_taken_path_is_refused_and_the_item_kept(
        stack: Stack, session: str, endpoint: Endpoint, tmp_path: Path) -> None:
    suspect = tmp_path / "dropper.bin"
    suspect.write_bytes(b"first")
    taken = completed(stack.run(session, f"remediate {suspect}"))
    suspect.write_bytes(b"second")
    failed(stack.run(session, f"undo {taken['qid']}"), "path_exists")
    assert suspect.read_bytes() == b"second"
    assert (endpoint.vault / taken["qid"] / "content").read_bytes() == b"first"


def test_kill_tree_ends_a_real_tree_children_first(stack: Stack, session: str) -> None:
    root = subprocess.Popen(["sh", "-c", "sleep 300 & sh -c 'sleep 300 & wait' & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(root.pid).children(recursive=True)) < 3:
            assert time.monotonic() < deadline, "the tree never formed"
            time.sleep(0.02)
        members = psutil.Process(root.pid).children(recursive=True)
        result = completed(stack.run(session, f"kill {root.pid} --tree"))
        order = [k["pid"] for k in result["killed"]]
        assert sorted(order) == sorted([root.pid, *(p.pid for p in members)])
        assert order[-1] == root.pid
        depths = [k["depth"] for k in result["killed"]]
        assert depths == sorted(depths, reverse=True) and depths[0] == 2
        root.wait(timeout=10)
        for proc in members:
            assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    finally:
        for proc in psutil.Process(os.getpid()).children(recursive=True):
            if proc.pid == root.pid or root.pid in [p.pid for p in proc.parents()]:
                proc.kill()
        if root.poll() is None:
            root.kill()
            root.wait()


def test_persistence_reports_the_planted_items(stack: Stack, session: str,
                                               endpoint: Endpoint) -> None:
    result = completed(stack.run(session, "persistence"))
    assert result["root"] == str(endpoint.root)
    items = {i["path"]: i for i in result["items"]}
    for rel in ("etc/cron.d/evil", "etc/systemd/system/implant.service",
                "root/.ssh/authorized_keys", "etc/ld.so.preload"):
        path = endpoint.root / rel
        item = items["/" + rel]
        assert item["sha256"] == sha256sum(path)
        assert item["mtime"] == os.stat(path).st_mtime and item["owner"] == "root"
    assert items["/etc/cron.d/evil"]["detail"]["lines"] == [EVIL_CRON.strip()]
    unit = items["/etc/systemd/system/implant.service"]["detail"]
    assert unit["enabled"] is True and unit["exec_start"] == ["/opt/.hidden/implant --daemon"]
    only_cron = completed(stack.run(session, "persistence --kind cron"))
    assert {i["kind"] for i in only_cron["items"]} == {"cron"}


def test_services_lists_unit_files_when_systemd_is_not_running(stack: Stack,
                                                                session: str) -> None:
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here")
    result = completed(stack.run(session, "services"))
    assert result["source"] == "unit-files" and "systemd is not running" in result["note"]
    assert [(s["name"], s["load"]) for s in result["services"]] == [
        ("implant.service", "enabled")]
