"""Commands that would never end or would answer without end: the agent stops them at their
limit, says so, audits it, and goes on serving; with either pool (threads, the default, whose
limits the agent's watchdog enforces, and prefork, whose limits Celery enforces).

- A handler past the command's time limit (hashing a 1 TiB sparse file) fails as
  `timeout`; a script that sleeps forever is stopped at the script limit with
  everything it started.
- A script printing 100 MB is read to its end in constant memory (the peak resident size,
  VmHWM, of the agent's processes barely moves), kept truncated with a marker; the result in
  the backend stays within the limit and its digest is audited.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestrator.files.library import library_of
from tasks.signing import KeyPair
from tests.stack import Stack, own_prefix_stack

#: The command time limit on this module's agent (the soft limit; Celery's hard one follows).
TIME_LIMIT_S = 9.0
#: The script limit (kept below the command's by the agent's margin of 5 s): room for the
#: 100 MB script on a busy machine (it takes ~0.5 s).
SCRIPT_LIMIT_S = 4.0
#: The result limit: small, so every command here reaches it.
OUTPUT_MAX_BYTES = 32 * 1024
#: What the flooding script writes.
FLOOD_BYTES = 100 * 1024 * 1024
#: How much the peak resident size of an agent process may grow while 100 MB flow through it.
PEAK_GROWTH_MAX_BYTES = 24 * 1024 * 1024


@pytest.fixture(scope="module", params=["threads", "prefork"])
def stack(request: pytest.FixtureRequest, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair) -> Iterator[Stack]:
    with own_prefix_stack(redis_url, [f"lim-{uuid.uuid4().hex[:8]}"],
                          tmp_path_factory.mktemp("limits"), signing=signing_keys,
                          command_time_limit_s=TIME_LIMIT_S, runscript_timeout_s=SCRIPT_LIMIT_S,
                          output_max_bytes=OUTPUT_MAX_BYTES, agent_pool=request.param) as st:
        yield st


def _device(stack: Stack) -> str:
    return next(iter(stack.agents))


def _script(stack: Stack, body: str) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}.sh"
    library_of(stack.plane).add(name, body.encode(), "admin")
    return name


def _background(stack: Stack, session: str, line: str) -> str:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session}/commands", json={"line": line, "background": True})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["command_id"])


def _final(stack: Stack, command_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with stack.client() as http:
        while True:
            body: dict[str, Any] = http.get(f"/commands/{command_id}").json()
            if body.get("outcome_recorded"):
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.2)


def _outcomes(stack: Stack, command_id: str) -> list[Any]:
    """The command's outcome entries in the audit stream (reads of it are audited too)."""
    return [e for e in stack.plane.audit.read(command=command_id)
            if e.action.startswith("command.") and e.action != "command.requested"]


def _agent_processes(stack: Stack) -> list[psutil.Process]:
    """The agent's main process and its pool processes (none in the threads pool)."""
    main = psutil.Process(stack.agents[_device(stack)].pid)
    return [main, *main.children()]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_handler_past_its_time_limit_and_a_script_that_never_ends_are_stopped_and_audited(
        stack: Stack, tmp_path: Path) -> None:
    session = stack.open_session(_device(stack))
    huge = tmp_path / "huge.img"
    subprocess.run(["truncate", "-s", "1T", str(huge)], check=True)  # sparse: no disk used
    started = time.monotonic()
    hashing = _background(stack, session, f"getfilehash {huge} --algo all")

    # Meanwhile, on the agent's other pool process: a script that sleeps forever.
    pids = tmp_path / "pids"
    forever = _script(stack, f"echo $$ > {pids}\nsleep 1000 &\necho $! >> {pids}\nwait\n")
    body = stack.run(session, f"runscript {forever}")
    assert body["status"] == "completed", body
    result = body["result"]
    assert result["timed_out"] is True and result["exit_code"] is None
    assert result["timeout_s"] == SCRIPT_LIMIT_S
    assert not any(_alive(int(p)) for p in pids.read_text().split())
    (entry,) = _outcomes(stack, body["command_id"])
    assert entry.action == "command.completed"

    hashed = _final(stack, hashing, timeout_s=TIME_LIMIT_S + 20)
    took = time.monotonic() - started
    assert hashed["status"] == "failed", hashed
    assert hashed["error"]["code"] == "timeout"
    assert hashed["error"]["message"] == "getfilehash ran past its time limit and was stopped"
    assert TIME_LIMIT_S - 1 < took < TIME_LIMIT_S + 10, took
    (entry,) = _outcomes(stack, hashing)
    assert entry.action == "command.failed" and entry.details["error"] == "timeout"

    # The agent goes on serving, with the same processes (none was killed): one in the
    # threads pool, the main one and two pool processes in prefork.
    pool = {p.pid for p in _agent_processes(stack)}
    assert len(pool) == (1 if stack.agent_env["LR_AGENT_POOL"] == "threads" else 3), pool
    assert stack.run(session, f"dir {tmp_path}")["status"] == "completed"
    assert {p.pid for p in _agent_processes(stack)} == pool


def test_a_100_mb_output_is_cut_with_a_marker_in_constant_memory_and_audited_with_its_digest(
        stack: Stack, tmp_path: Path) -> None:
    session = stack.open_session(_device(stack))
    flood = _script(stack, f"head -c {FLOOD_BYTES} /dev/zero | tr '\\0' x\necho done >&2\n")
    pool = _agent_processes(stack)
    before = {}
    for proc in pool:  # reset each pool process's peak resident size to its size now
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        before[proc.pid] = _status_kib(proc.pid, "VmHWM") * 1024

    body = stack.run(session, f"runscript {flood}")

    assert body["status"] == "completed", body
    result = body["result"]
    assert result["exit_code"] == 0 and result["timed_out"] is False
    assert result["stdout_bytes"] == FLOOD_BYTES and result["stdout_truncated"] is True
    kept, marker = result["stdout"].split("\n[output truncated: ")
    assert set(kept) == {"x"} and marker == f"{FLOOD_BYTES} bytes written, {len(kept)} kept]"
    assert result["stderr"] == "done\n"
    for proc in pool:
        growth = _status_kib(proc.pid, "VmHWM") * 1024 - before[proc.pid]
        assert growth < PEAK_GROWTH_MAX_BYTES, (proc.pid, growth)

    # The result backend holds a small result; the orchestrator's record and audit agree.
    p = stack.plane
    meta_key = p.celery.backend.get_key_for_task(body["command_id"])
    assert 0 < int(p.client.strlen(meta_key)) < 2 * OUTPUT_MAX_BYTES
    (entry,) = _outcomes(stack, body["command_id"])
    expected = hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()
    assert entry.action == "command.completed"
    assert entry.details["result_digest"] == f"sha256:{expected}"

    # A listing over the limit is cut too, and says so: a directory of 2,000 entries lists
    # to several times the limit, whatever else runs on the machine.
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for i in range(2000):
        (crowded / f"entry-{i:05d}-{'x' * 40}").touch()
    listed = stack.run(session, f"dir {crowded}")
    assert listed["status"] == "completed" and listed["truncated"] is True, listed["status"]
    assert len(json.dumps(listed["result"], separators=(",", ":"))) <= OUTPUT_MAX_BYTES
    assert 0 < len(listed["result"]["entries"]) < 2000
