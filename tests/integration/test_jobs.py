"""Background jobs: `&` returns at once, `jobs`/`fg` follow, `cancel` stops the agent's work."""

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

import psutil
import pytest
from celery.result import AsyncResult

from orchestrator.commands.jobs import MAX_RUNNING_JOBS
from orchestrator.files.library import library_of
from tests.stack import Stack, purge_device_queue, register_offline

#: A sparse file this large takes the agent far longer to hash than any test waits.
HUGE = 64 * 1024**3


@pytest.fixture
def huge_file(tmp_path: Path) -> Iterator[Path]:
    """A sparse 64 GiB file: no disk used, minutes of hashing."""
    path = tmp_path / "huge.img"
    with open(path, "wb") as f:
        f.truncate(HUGE)
    yield path
    path.unlink()


def _job(stack: Stack, session: str, job: int, token: str | None = None) -> dict[str, Any]:
    with stack.client(token) as http:
        resp = http.get(f"/sessions/{session}/jobs/{job}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


def _wait_until(stack: Stack, session: str, job: int, states: set[str],
                timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = _job(stack, session, job)
        if record["status"] in states:
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job} never reached {states}: {record}")


def _start(stack: Stack, session: str, line: str, token: str | None = None,
           **body: Any) -> dict[str, Any]:
    with stack.client(token) as http:
        resp = http.post(f"/sessions/{session}/commands", json={"line": line, **body})
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def test_a_background_command_returns_at_once_and_fg_gets_its_result(
        stack: Stack, session_a: str, tmp_path: Path) -> None:
    subject = tmp_path / "evidence.bin"
    subject.write_bytes(b"job bytes" * 1000)
    first = _start(stack, session_a, f"getfilehash {subject} &")
    second = _start(stack, session_a, f"fileinfo {subject}", background=True)
    assert (first["job"], second["job"]) == (1, 2)
    assert first["status"] in ("queued", "running")
    done = _wait_until(stack, session_a, 1, {"completed", "failed"})
    expected = subprocess.run(["sha256sum", str(subject)], capture_output=True, text=True,
                              check=True).stdout.split()[0]
    assert done["status"] == "completed" and done["result"]["sha256"] == expected
    with stack.client() as http:
        listed = http.get(f"/sessions/{session_a}/jobs").json()
    assert [(r["job"], r["command"]) for r in listed] == [(1, "getfilehash"), (2, "fileinfo")]


def test_cancel_stops_a_running_job_on_the_agent(stack: Stack, session_a: str,
                                                 huge_file: Path) -> None:
    started = _start(stack, session_a, f"getfilehash {huge_file} &")
    _wait_until(stack, session_a, started["job"], {"running"})
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/jobs/{started['job']}/cancel")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"
    # The agent's worker terminated the task: Celery records it as revoked.
    result = AsyncResult(started["command_id"], app=stack.plane.celery)
    deadline = time.monotonic() + 20
    while result.state != "REVOKED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert result.state == "REVOKED"
    assert _job(stack, session_a, started["job"])["status"] == "cancelled"
    cancelled = [e for e in stack.plane.audit.read(command=started["command_id"])
                 if e.action == "command.cancelled"]
    assert cancelled and cancelled[0].details["was"] == "running"
    # The pool process is free again: a new command completes promptly.
    small = stack.run(session_a, "getfilehash /etc/hostname")
    assert small["status"] == "completed"
    assert small["result"]["sha256"] == hashlib.sha256(
        Path("/etc/hostname").read_bytes()).hexdigest()


def test_a_long_command_and_a_short_one_run_side_by_side(stack: Stack, session_a: str,
                                                        huge_file: Path) -> None:
    # Two commands at once (the agent's default concurrency): a short one is not held up
    # behind a long one.
    long = _start(stack, session_a, f"getfilehash {huge_file} &")
    _wait_until(stack, session_a, long["job"], {"running"})
    began = time.monotonic()
    short = stack.run(session_a, "getfilehash /etc/hostname")
    assert short["status"] == "completed"
    assert time.monotonic() - began < 10
    assert _job(stack, session_a, long["job"])["status"] == "running"
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/jobs/{long['job']}/cancel")
    assert resp.status_code == 200, resp.text


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancel_of_a_running_script_ends_it_and_all_it_started(stack: Stack, session_a: str,
                                                               tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    name = f"t-{uuid.uuid4().hex[:8]}.sh"
    library_of(stack.plane).add(
        name, f"echo $$ > {pids}\nsleep 1000 &\necho $! >> {pids}\nwait\n".encode(), "admin")
    started = _start(stack, session_a, f"runscript {name} &")
    deadline = time.monotonic() + 20
    while len(pids.read_text().split() if pids.exists() else []) < 2:
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.05)
    script, child = (int(p) for p in pids.read_text().split())
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/jobs/{started['job']}/cancel")
    assert resp.status_code == 200, resp.text
    result = AsyncResult(started["command_id"], app=stack.plane.celery)
    deadline = time.monotonic() + 20
    while (result.state != "REVOKED" or _alive(script) or _alive(child)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert result.state == "REVOKED"
    assert not _alive(script) and not _alive(child)


def test_cancel_of_an_ended_job_is_a_clear_error(stack: Stack, session_a: str) -> None:
    started = _start(stack, session_a, "getfilehash /etc/hostname &")
    _wait_until(stack, session_a, started["job"], {"completed"})
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/jobs/{started['job']}/cancel")
        assert resp.status_code == 400
        assert "already ended (completed)" in resp.json()["error"]["message"]
        assert http.get(f"/sessions/{session_a}/jobs/99").status_code == 404


def test_only_the_owner_or_an_admin_cancels_a_job(stack: Stack, device_a: str,
                                                   huge_file: Path) -> None:
    owner = stack.user("job-owner", ["advanced"])
    other = stack.user("job-other", ["advanced"])
    session = stack.open_session(device_a, token=owner)
    started = _start(stack, session, f"getfilehash {huge_file} &", token=owner)
    with stack.client(other) as http:
        resp = http.post(f"/sessions/{session}/jobs/{started['job']}/cancel")
    assert resp.status_code == 403
    assert [e.action for e in stack.plane.audit.read(actor="job-other")][-1] == (
        "job.cancel_refused")
    with stack.client(owner) as http:
        assert http.post(f"/sessions/{session}/jobs/{started['job']}/cancel").status_code == 200


def test_closing_the_session_cancels_its_jobs(stack: Stack, session_a: str,
                                              huge_file: Path) -> None:
    started = _start(stack, session_a, f"getfilehash {huge_file} &")
    _wait_until(stack, session_a, started["job"], {"running"})
    with stack.client() as http:
        assert http.delete(f"/sessions/{session_a}").status_code == 200
    record = stack.plane.states.get(started["command_id"])
    assert record["state"] == "cancelled"
    result = AsyncResult(started["command_id"], app=stack.plane.celery)
    deadline = time.monotonic() + 20
    while result.state != "REVOKED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert result.state == "REVOKED"


def test_jobs_for_an_offline_device_hold_no_thread_and_expire_when_read(
        stack: Stack) -> None:
    device = register_offline(stack)
    session = stack.open_session(device)
    threads_before = threading.active_count()
    jobs = [_start(stack, session, "dir /tmp &", expires_s=1.0)["job"] for _ in range(40)]
    # More jobs than the receiver pool has threads, and not one thread more for them.
    assert len(jobs) > MAX_RUNNING_JOBS
    assert threading.active_count() <= threads_before + 1
    time.sleep(2.2)  # past the expiry and the second a waiter would give
    with stack.client() as http:
        listed = http.get(f"/sessions/{session}/jobs").json()
    assert [r["status"] for r in listed] == ["expired"] * 40
    assert all(r["error"]["code"] == "expired" for r in listed)
    audited = {e.details.get("command_id") for e in stack.plane.audit.read(session=session)
               if e.action == "command.expired"}
    assert {r["command_id"] for r in listed} <= audited
    purge_device_queue(stack.plane, device)


def test_transfers_queued_for_an_offline_device_leave_every_receiver_to_one_that_runs(
        stack: Stack, session_a: str, tmp_path: Path) -> None:
    """More `getfile &` for an offline device than there are receiver threads: they take
    none (one watcher looks at their states), and a getfile on a live device is received."""
    device = register_offline(stack)
    offline = stack.open_session(device)
    threads_before = threading.active_count()
    started = [_start(stack, offline, "getfile /etc/hostname &", expires_s=600.0)
               for _ in range(MAX_RUNNING_JOBS + 8)]
    waiting = [r["job"] for r in started]
    time.sleep(0.5)  # a few turns of the watcher
    assert threading.active_count() <= threads_before + 1
    target = tmp_path / "sent.bin"
    target.write_bytes(os.urandom(300_000))
    job = _start(stack, session_a, f"getfile {target} &")["job"]
    deadline = time.monotonic() + 60
    while not (record := _job(stack, session_a, job))["outcome_recorded"]:
        assert time.monotonic() < deadline, record
        time.sleep(0.1)
    assert record["status"] == "completed", record
    assert record["result"]["evidence_sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    with stack.client() as http:  # the waiting ones end now, each handed to a receiver
        for n in waiting:
            assert http.post(f"/sessions/{offline}/jobs/{n}/cancel").status_code == 200
    deadline = time.monotonic() + 30
    while not all((r := _job(stack, offline, n))["outcome_recorded"] for n in waiting):
        assert time.monotonic() < deadline, r
        time.sleep(0.2)
    assert {_job(stack, offline, n)["status"] for n in waiting} == {"cancelled"}
    # Nothing keeps listening for the answers that will never come.
    consumer = stack.plane.celery.backend.result_consumer
    keys = {consumer._get_key_for_task(r["command_id"]) for r in started}
    assert not keys & consumer.subscribed_to
    purge_device_queue(stack.plane, device)


def test_a_finished_jobs_outcome_is_recorded_when_it_is_read_by_its_command_id(
        stack: Stack, session_a: str, tmp_path: Path) -> None:
    target = tmp_path / "by-id.txt"
    target.write_bytes(b"read me by id\n")
    started = _start(stack, session_a, f"getfilehash {target} &")
    deadline = time.monotonic() + 30
    with stack.client() as http:
        while True:  # no reaper runs in this test's API: the read itself records the outcome
            body = http.get(f"/commands/{started['command_id']}").json()
            if body["outcome_recorded"]:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
    assert body["status"] == "completed"
    assert body["result"]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    outcomes = [e for e in stack.plane.audit.read(command=started["command_id"])
                if e.action == "command.completed"]
    assert len(outcomes) == 1
