"""memdump and collect through API → pipeline → real agent → evidence store, checked against
sha256sum, stat, tar and the process's own memory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.files.evidence import EvidenceStore
from tasks.commands.collect import MANIFEST_NAME
from tasks.commands.memory import read_memdump_manifest
from tasks.signing import KeyPair
from tests.stack import Stack, completed, new_device_id, own_prefix_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one agent with 64 KiB chunks (so a dump or archive takes many)."""
    with own_prefix_stack(redis_url, [new_device_id("ev")], tmp_path_factory.mktemp("ev"),
                          signing=signing_keys, command_expiry_s=5.0,
                          transfer_chunk_bytes=64 * 1024) as st:
        yield st


@pytest.fixture
def session(stack: Stack) -> str:
    return stack.open_session(next(iter(stack.agents)))


@pytest.fixture
def marked_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A Python process holding a marker it built at run time (so it is only in its heap)."""
    marker = "LR-MARKER-" + os.urandom(8).hex()
    code = ("import sys, time; half = sys.stdin.readline().strip(); "
            "held = (half + '-' + half[::-1]).encode(); print('ready', flush=True); "
            "time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(marker + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ready"
        yield child, f"{marker}-{marker[::-1]}"
    finally:
        child.kill()
        child.wait()


def _sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _store(st: Stack) -> EvidenceStore:
    return EvidenceStore(st.plane.settings.evidence_path(), st.plane.client, st.plane.keys)


def _nothing_left(st: Stack) -> bool:
    temp = _store(st).temp_dir
    streams = list(st.plane.client.scan_iter(f"{st.plane.keys.prefix}:xfer:*"))
    return not streams and not (temp.exists() and any(temp.iterdir()))


def test_memdump_stores_the_memory_holding_the_marker_with_a_matching_sha256(
        stack: Stack, session: str,
        marked_process: tuple[subprocess.Popen[str], str]) -> None:
    child, marker = marked_process
    result = completed(stack.run(session, f"memdump {child.pid}"))
    stored = Path(result["evidence_path"])
    assert _sha256sum(stored) == result["sha256"] == result["evidence_sha256"]
    assert stored.stat().st_size == result["size_bytes"]
    data = stored.read_bytes()
    at = data.find(marker.encode())
    assert at >= 0, "the marker is not in the stored dump"
    with stored.open("rb") as stream:
        manifest = read_memdump_manifest(stream)
    assert manifest["pid"] == child.pid and manifest["regions"] == result["regions"]
    holding = [r for r in manifest["regions"]
               if r["offset"] <= at < r["offset"] + r["size_bytes"]]
    assert len(holding) == 1 and "w" in holding[0]["perms"]
    # Every readable mapping is in the dump or listed as skipped.
    maps = Path(f"/proc/{child.pid}/maps").read_text().splitlines()
    readable = {tuple(int(a, 16) for a in line.split()[0].split("-")) for line in maps
                if line.split()[1].startswith("r")}
    listed = {(int(r["start"], 16), int(r["end"], 16))
              for r in result["regions"] + result["skipped"]}
    assert readable <= listed
    assert any(r["path"] == "[vvar]" for r in result["skipped"])
    assert _nothing_left(stack)


def test_memdump_refuses_the_agent_its_pool_its_threads_and_pid_1(
        stack: Stack, session: str) -> None:
    agent_pid = next(iter(stack.agents.values())).pid
    assert stack.run(session, "dir /")["status"] == "completed"  # the pool's thread is up
    # Pool processes with LR_AGENT_POOL=prefork; none in the default threads pool.
    pool = [child.pid for child in psutil.Process(agent_pid).children(recursive=True)]
    threads = [int(t) for t in os.listdir(f"/proc/{agent_pid}/task") if int(t) != agent_pid]
    assert pool or threads, "the agent runs commands in pool processes or threads"
    for pid in (agent_pid, *pool, *threads[:1], 1):
        body = stack.run(session, f"memdump {pid}")
        assert body["status"] == "failed", body
        assert body["error"]["code"] == "protected_process"
    assert _nothing_left(stack)


def test_memdump_needs_execute_as_well_as_collect(stack: Stack) -> None:
    token = stack.user("collector-only", ["automation"])
    session = stack.open_session(next(iter(stack.agents)), token=token)
    body = stack.run(session, f"memdump {os.getpid()}", token=token)
    assert body["error"]["code"] == "permission_denied", body
    assert "'live.execute'" in body["error"]["message"]


def _tree(root: Path) -> Path:
    """A small tree: files of several modes and times, a subdirectory, symlinks, a FIFO."""
    (root / "app/sub").mkdir(parents=True)
    (root / "app/run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "app/run.sh").chmod(0o750)
    (root / "app/blob.bin").write_bytes(os.urandom(300_000))
    (root / "app/sub/notes.txt").write_text("a note\n")
    (root / "app/sub/notes.txt").chmod(0o600)
    os.utime(root / "app/sub/notes.txt", (1_600_000_000.5, 1_650_000_000.25))
    (root / "app/link").symlink_to("sub/notes.txt")
    (root / "app/dangling").symlink_to("/nonexistent/target")
    os.mkfifo(root / "app/pipe")
    return root / "app"


def test_collect_archives_a_tree_as_sha256sum_stat_and_tar_see_it(
        stack: Stack, session: str, tmp_path: Path) -> None:
    app = _tree(tmp_path / "src")
    result = completed(stack.run(session, f"collect {app}"))
    stored = Path(result["evidence_path"])
    assert _sha256sum(stored) == result["sha256"] == result["evidence_sha256"]
    members = {m["path"]: m for m in result["members"]}
    real = {str(p) for p in [app, *app.rglob("*")]} - {str(app / "pipe")}
    assert set(members) == real
    assert result["skipped"] == [{"path": str(app / "pipe"), "type": "fifo",
                                  "reason": "special file: no content to archive"}]
    for path, member in members.items():
        st = os.lstat(path)
        assert member["mode"] == stat.filemode(st.st_mode)
        assert member["mtime"] == st.st_mtime and member["size_bytes"] == (
            st.st_size if member["type"] == "file" else 0)
        if member["type"] == "file":
            assert member["sha256"] == _sha256sum(Path(path))
        if member["type"] == "symlink":
            assert member["link_target"] == os.readlink(path)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(stored), "-C", str(out)], check=True)
    for path, member in members.items():
        got = out / member["name"]
        assert got == out / path.lstrip("/")
        if member["type"] == "file":
            assert _sha256sum(got) == member["sha256"]
            assert stat.S_IMODE(got.stat().st_mode) == int(member["mode_octal"], 8)
            assert got.stat().st_mtime == pytest.approx(member["mtime"], abs=1e-6)
        elif member["type"] == "symlink":
            assert os.readlink(got) == member["link_target"]
    inside = json.loads((out / MANIFEST_NAME).read_text())
    assert inside["members"] == result["members"] and inside["skipped"] == result["skipped"]
    with tarfile.open(stored) as tar:
        assert tar.getnames()[-1] == MANIFEST_NAME
    assert _nothing_left(stack)


def test_collect_takes_a_glob(stack: Stack, session: str, tmp_path: Path) -> None:
    for name in ("a.log", "b.log", "c.txt"):
        (tmp_path / name).write_text(name)
    result = completed(stack.run(session, f"collect '{tmp_path}/*.log'"))
    assert result["roots"] == [str(tmp_path / "a.log"), str(tmp_path / "b.log")]
    assert [m["name"] for m in result["members"]] == [
        str(tmp_path / n).lstrip("/") for n in ("a.log", "b.log")]


@pytest.mark.parametrize("max_bytes, files", [
    # The files alone are over the limit: refused before a byte moves.
    ("100k", 3),
    # The files fit but the archive's headers do not: stopped while streaming.
    ("20000", 4),
])
def test_collect_over_max_bytes_fails_and_keeps_nothing(
        stack: Stack, session: str, tmp_path: Path, max_bytes: str, files: int) -> None:
    for n in range(files):
        (tmp_path / f"f{n}").write_bytes(os.urandom(40_000 if max_bytes == "100k" else 4_500))
    before = len(_store(stack).acquisitions())
    body = stack.run(session, f"collect {tmp_path} --max-bytes {max_bytes}")
    assert body["status"] == "failed", body
    assert body["error"]["code"] == "file_too_large"
    assert "nothing was" in body["error"]["message"]
    assert len(_store(stack).acquisitions()) == before
    deadline = time.monotonic() + 5
    while not _nothing_left(stack) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _nothing_left(stack)


def test_collect_refuses_a_max_bytes_over_the_orchestrators_limit(
        stack: Stack, session: str, tmp_path: Path) -> None:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session}/commands",
                         json={"line": f"collect {tmp_path} --max-bytes 9T"})
    assert resp.status_code == 400, resp.text
    assert "over the orchestrator's limit" in resp.json()["error"]["message"]
