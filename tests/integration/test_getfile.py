"""getfile end to end: API → signed command → real agent → broker stream → evidence store."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from orchestrator.files.evidence import EvidenceStore
from tasks.signing import KeyPair
from tests.stack import Stack, new_device_id, own_prefix_stack

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
#: Most a 200 MB transfer's peak memory may exceed a 20 MB one's, on either side.
MEMORY_SLACK_BYTES = 16 * MIB
#: The getfile limit of the slow stack.
SLOW_LIMIT_BYTES = 8 * MIB


def _stack(redis_url: str, tmp: Path, signing: KeyPair, **settings: Any) -> Iterator[Stack]:
    with own_prefix_stack(redis_url, [new_device_id("gf")], tmp, signing=signing,
                          command_expiry_s=5.0, **settings) as st:
        yield st


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one agent with the default 1 MiB chunks."""
    yield from _stack(redis_url, tmp_path_factory.mktemp("getfile"), signing_keys)


@pytest.fixture(scope="module")
def slow_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
               signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one agent sending 4 KiB chunks one at a time (slow enough to interfere with: about
    0.4 s per MiB here), and a getfile limit of 8 MiB."""
    yield from _stack(redis_url, tmp_path_factory.mktemp("getfile-slow"), signing_keys,
                      transfer_chunk_bytes=4096, transfer_window_chunks=1,
                      getfile_max_bytes=SLOW_LIMIT_BYTES)


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Path]]:
    """Random files of 20 MB and 200 MB, streamed to disk, deleted afterwards."""
    root = tmp_path_factory.mktemp("big")
    files = {}
    for size_mb in (20, 200):
        path = root / f"random-{size_mb}mb.bin"
        with path.open("wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(1000 * 1000))
        files[size_mb] = path
    yield files
    for path in files.values():
        path.unlink(missing_ok=True)


def _device(st: Stack) -> str:
    return next(iter(st.agents))


def _store(st: Stack) -> EvidenceStore:
    return EvidenceStore(st.plane.settings.evidence_path(), st.plane.client, st.plane.keys)


def _sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _no_streams(st: Stack) -> bool:
    return not list(st.plane.client.scan_iter(f"{st.plane.keys.prefix}:xfer:*"))


def _outcome(http: httpx.Client, command_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """A background command's record once its outcome is recorded (result or error)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record: dict[str, Any] = http.get(f"/commands/{command_id}").json()
        if record.get("result") is not None or record.get("error") is not None:
            return record
        time.sleep(0.05)
    raise AssertionError(f"command {command_id} has no outcome after {timeout_s} s: {record}")


def _temp_files(st: Stack) -> list[Path]:
    temp = _store(st).temp_dir
    return list(temp.iterdir()) if temp.exists() else []


def test_a_200_mb_file_arrives_with_the_sha256_sha256sum_computes(
    stack: Stack, big_files: dict[int, Path],
) -> None:
    source = big_files[200]
    expected = _sha256sum(source)
    session = stack.open_session(_device(stack))
    body = stack.run(session, f"getfile {source}")
    assert body["status"] == "completed", body
    result = body["result"]
    assert result["sha256"] == result["evidence_sha256"] == expected
    assert result["size_bytes"] == source.stat().st_size == 200 * 1000 * 1000
    assert result["chunks"] == -(-result["size_bytes"] // MIB)
    stored = Path(result["evidence_path"])
    assert stored == _store(stack).object_path(expected)
    assert _sha256sum(stored) == expected
    subprocess.run(["cmp", str(source), str(stored)], check=True)
    assert _no_streams(stack) and _temp_files(stack) == []


class PeakRss:
    """Samples the RSS of some processes in a thread; the largest growth over the baseline."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.base = {p.pid: p.memory_info().rss for p in self.procs}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for proc in self.procs:
                try:
                    self.peak[proc.pid] = max(self.peak[proc.pid], proc.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return max(self.peak[pid] - self.base[pid] for pid in self.base)


def _measured_transfer(st: Stack, session: str, path: Path) -> tuple[int, int]:
    """(agent's, orchestrator's) peak RSS growth while `path` is collected."""
    agent = psutil.Process(st.agents[_device(st)].pid)
    # The agent's one process (threads pool), or its pool processes (prefork).
    pool = [child.pid for child in agent.children(recursive=True)] or [agent.pid]
    with PeakRss(pool) as on_agent, PeakRss([os.getpid()]) as on_orchestrator:
        body = st.run(session, f"getfile {path}")
    assert body["status"] == "completed", body
    return on_agent.growth, on_orchestrator.growth


def test_memory_on_both_sides_does_not_grow_with_the_file_size(
    stack: Stack, big_files: dict[int, Path], tmp_path: Path,
) -> None:
    session = stack.open_session(_device(stack))
    warm_up = tmp_path / "warm-up.bin"
    warm_up.write_bytes(os.urandom(4 * MIB))
    for _ in range(2):  # the pool threads (or processes) and the receiver reach steady state
        assert stack.run(session, f"getfile {warm_up}")["status"] == "completed"
    agent_20, orchestrator_20 = _measured_transfer(stack, session, big_files[20])
    agent_200, orchestrator_200 = _measured_transfer(stack, session, big_files[200])
    assert agent_200 < agent_20 + MEMORY_SLACK_BYTES, (agent_20, agent_200)
    assert orchestrator_200 < orchestrator_20 + MEMORY_SLACK_BYTES, (
        orchestrator_20, orchestrator_200)


def test_a_file_deleted_mid_transfer_fails_cleanly_and_keeps_nothing(
    slow_stack: Stack, tmp_path: Path,
) -> None:
    st = slow_stack
    subject = tmp_path / "vanishing.bin"
    subject.write_bytes(os.urandom(4 * MIB))
    session = st.open_session(_device(st))
    with st.client() as http:
        started = http.post(f"/sessions/{session}/commands",
                            json={"line": f"getfile {subject}", "background": True})
        assert started.status_code == 202, started.text
        command_id = started.json()["command_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            progress = http.get(f"/commands/{command_id}").json().get("progress") or {}
            if progress.get("bytes", 0) > 0:
                break
            time.sleep(0.01)
        assert progress["bytes"] < progress["size"] == 4 * MIB, progress
        subject.unlink()
        record = _outcome(http, command_id)
    assert record["status"] == "failed", record
    assert record["error"]["code"] == "file_changed"
    assert "was deleted during transfer" in record["error"]["message"]
    assert _store(st).acquisitions() == []
    assert not (_store(st).root / "sha256").exists()
    assert _temp_files(st) == []
    assert _no_streams(st)
    failed = [e for e in st.plane.audit.read(command=command_id) if e.action == "evidence.failed"]
    assert failed and failed[0].details["reason"] == "file_changed"


def test_a_file_over_the_limit_is_refused_before_any_byte_moves(
    slow_stack: Stack, tmp_path: Path,
) -> None:
    subject = tmp_path / "too-big.bin"
    subject.write_bytes(b"z" * (SLOW_LIMIT_BYTES + 1))
    session = slow_stack.open_session(_device(slow_stack))
    body = slow_stack.run(session, f"getfile {subject}")
    assert body["status"] == "failed", body
    assert body["error"]["code"] == "file_too_large"
    assert f"over the getfile limit of {SLOW_LIMIT_BYTES} bytes" in body["error"]["message"]
    assert body["args"]["max_bytes"] == SLOW_LIMIT_BYTES  # the orchestrator's limit, signed
    assert body["progress"] is None
    assert _store(slow_stack).acquisitions() == [] and _no_streams(slow_stack)


@pytest.fixture
def specials(tmp_path: Path) -> Iterator[Path]:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "subdir").mkdir()
    yield tmp_path


@pytest.mark.parametrize(("name", "code"), [
    ("pipe", "not_a_file"), ("subdir", "not_a_file"), ("/dev/zero", "not_a_file"),
    ("missing.bin", "path_not_found"),
])
def test_special_and_missing_paths_are_refused_with_no_stream_and_no_evidence(
    stack: Stack, specials: Path, name: str, code: str,
) -> None:
    session = stack.open_session(_device(stack))
    before = len(_store(stack).acquisitions())
    body = stack.run(session, f"getfile {specials / name}")
    assert body["status"] == "failed", body
    assert body["error"]["code"] == code
    assert len(_store(stack).acquisitions()) == before and _no_streams(stack)


def test_custody_is_audited_with_both_hashes_and_never_the_content(
    stack: Stack, tmp_path: Path,
) -> None:
    marker = f"CONFIDENTIAL-{uuid.uuid4().hex}".encode()
    subject = tmp_path / "payroll.csv"
    subject.write_bytes(marker * 1000)
    expected = hashlib.sha256(subject.read_bytes()).hexdigest()
    session = stack.open_session(_device(stack))
    body = stack.run(session, f"getfile {subject}")
    assert body["status"] == "completed", body
    (entry,) = [e for e in stack.plane.audit.read(command=body["command_id"])
                if e.action == "evidence.stored"]
    assert entry.actor == "admin" and entry.target == expected
    assert entry.details["sha256_agent"] == entry.details["sha256_arrival"] == expected
    assert entry.details["path"] == str(subject)
    assert entry.details["device"] == _device(stack) and entry.details["session"] == session
    assert entry.details["size_bytes"] == len(marker) * 1000
    raw: Any = stack.plane.client.xrange(stack.plane.keys.audit)
    assert all(marker not in value for _, fields in raw for value in fields.values())


def test_getfile_in_the_background_is_received_by_the_job(
    stack: Stack, tmp_path: Path,
) -> None:
    subject = tmp_path / "job.bin"
    subject.write_bytes(os.urandom(3 * MIB))
    session = stack.open_session(_device(stack))
    started = stack.run(session, f"getfile {subject} &")
    assert started["job"] is not None and started["status"] in ("queued", "running")
    with stack.client() as http:
        record = _outcome(http, started["command_id"])
    assert record["status"] == "completed", record
    assert record["result"]["evidence_sha256"] == _sha256sum(subject)


def test_evidence_routes_list_stream_and_audit_downloads(stack: Stack, tmp_path: Path) -> None:
    subject = tmp_path / "sample.bin"
    data = os.urandom(MIB + 3)
    subject.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    session = stack.open_session(_device(stack))
    body = stack.run(session, f"getfile {subject}")
    assert body["status"] == "completed", body
    with stack.client() as http:
        listed = [e for e in http.get("/evidence").json() if e["command_id"] == body["command_id"]]
        assert listed and listed[0]["sha256"] == sha and listed[0]["path"] == str(subject)
        assert listed[0]["device_id"] == _device(stack) and listed[0]["user"] == "admin"
        got = http.get(f"/evidence/{sha}")
        assert got.status_code == 200 and got.content == data
        assert got.headers["x-evidence-sha256"] == sha
        assert http.get(f"/evidence/{'0' * 64}").json()["error"]["code"] == "unknown_evidence"
        assert http.get(f"/evidence/{'0' * 64}").status_code == 404
        assert http.get("/evidence/not-a-sha").status_code == 400
    downloads = [e for e in stack.plane.audit.read() if e.action == "evidence.downloaded"
                 and e.target == sha]
    assert downloads and downloads[-1].actor == "admin"


def test_evidence_needs_the_collect_permission(stack: Stack, tmp_path: Path) -> None:
    subject = tmp_path / "restricted.bin"
    subject.write_bytes(b"r" * 100)
    session = stack.open_session(_device(stack))
    sha = stack.run(session, f"getfile {subject}")["result"]["evidence_sha256"]
    viewer = stack.user(f"viewer-{uuid.uuid4().hex[:6]}", ["responder"])
    with stack.client(viewer) as http:
        assert http.get("/evidence").status_code == 403
        assert http.get(f"/evidence/{sha}").status_code == 403
        assert http.post(f"/sessions/{stack.open_session(_device(stack), viewer)}/commands",
                         json={"line": f"getfile {subject}"}).status_code == 403
    denied = [e for e in stack.plane.audit.read() if e.action == "access.denied"
              and e.details.get("permission") == "live.collect"]
    assert len(denied) >= 2
