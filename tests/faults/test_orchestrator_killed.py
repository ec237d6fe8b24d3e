"""A real `lr orchestrator serve` SIGKILLed while it waits for a command and while it receives
a `getfile`: another orchestrator process (this test's, running a reaper) records and audits
each outcome exactly once; the half-received file is failed, its temp file and stream gone."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import orchestrator.commands.reaper as reaper_module
from orchestrator.commands.reaper import Reaper
from orchestrator.commands.records import load_record
from orchestrator.files.library import library_of
from tests.serve_process import Serve
from tests.stack import Stack, new_device_id

#: The agent's transfer settings: one small chunk in flight, so a transfer lasts a while,
#: and a sender that gives up soon once nobody reads.
TRANSFER = {"transfer_chunk_bytes": 4096, "transfer_window_chunks": 1,
            "transfer_stall_timeout_s": 2.0}
#: The collected file: thousands of chunks, far more than arrive before the kill.
BIG_BYTES = 16 * 1024 * 1024


@pytest.fixture
def doomed_serve(tmp_path: Path) -> Iterator[list[Serve]]:
    """Serves a test starts; each is killed afterwards, whatever happened."""
    started: list[Serve] = []
    try:
        yield started
    finally:
        for serve in started:
            serve.kill_all()


def _serve_for(st: Stack, tmp_path: Path) -> Serve:
    """A second orchestrator on the stack's Redis, prefix, keys and evidence directory."""
    s = st.plane.settings
    env = {"LR_REDIS_URL": str(s.redis_url), "LR_KEY_PREFIX": st.plane.keys.prefix,
           "LR_SIGNING_KEY_FILE": str(st.signing.private_path),
           "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": str(st.signing.public_path),
           "LR_EVIDENCE_DIR": str(s.evidence_path()),
           **{f"LR_{k.upper()}": str(v) for k, v in TRANSFER.items()}}
    return Serve(tmp_path / "serve-a", tmp_path / "serve-a.log", env=env)


def _post(serve: Serve, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    resp = httpx.post(f"{serve.url}{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code in (201, 202), resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def _outcome_actions(st: Stack, command_id: str) -> list[str]:
    return [e.action for e in st.plane.audit.read(command=command_id)
            if e.action.startswith(("command.", "evidence."))
            and e.action != "command.requested"]


def _wait(probe: Any, what: str | Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := probe()):
        assert time.monotonic() < deadline, \
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        time.sleep(0.05)
    return found


def test_outcomes_a_sigkilled_orchestrator_was_waiting_for_are_recorded_once_by_another(
        stack_factory, doomed_serve: list[Serve], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    # This process is the surviving orchestrator; its reaper steps in soon after a waiter
    # would have.
    monkeypatch.setattr(reaper_module, "REAP_GRACE_S", 0.5)
    device = new_device_id("orchkill")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG_BYTES))
    with stack_factory([device], **TRANSFER) as st:
        survivor = Reaper(st.plane)  # running all along, as in any orchestrator
        survivor.start()
        request.addfinalizer(survivor.stop)
        serve = _serve_for(st, tmp_path)
        doomed_serve.append(serve)
        serve.start()
        session = _post(serve, st.token, "/sessions", {"device_id": device})["id"]
        script = f"slow-{uuid.uuid4().hex[:8]}.sh"
        library_of(st.plane).add(script, b"sleep 3\necho finished\n", "admin")
        waited = _post(serve, st.token, f"/sessions/{session}/commands",
                       {"line": f"runscript {script}", "background": True})["command_id"]
        getfile = _post(serve, st.token, f"/sessions/{session}/commands",
                        {"line": f"getfile {big}", "background": True})["command_id"]
        temp = st.plane.settings.evidence_path() / "tmp" / f"{getfile}.part"
        _wait(lambda: temp.exists() and temp.stat().st_size > 0, "the transfer under way", 20)
        _wait(lambda: st.plane.states.state(waited) is not None
              and st.plane.states.state(waited).value == "running", "the script running", 20)

        assert serve.proc is not None
        os.kill(serve.proc.pid, signal.SIGKILL)
        serve.proc.wait()
        received = temp.stat().st_size
        assert 0 < received < BIG_BYTES
        assert not load_record(st.plane, waited).outcome_recorded  # it died waiting

        _wait(lambda: load_record(st.plane, waited).outcome_recorded
              and load_record(st.plane, getfile).outcome_recorded,
              lambda: f"both outcomes: {load_record(st.plane, waited)} "
                      f"{load_record(st.plane, getfile)} "
                      f"{st.plane.client.get(st.plane.celery.backend.get_key_for_task(getfile))!r}",
              30)
        done = load_record(st.plane, waited)
        assert done.status.value == "completed" and done.result is not None
        assert done.result["stdout"] == "finished\n"
        assert _outcome_actions(st, waited) == ["command.completed"]

        failed = load_record(st.plane, getfile)
        assert failed.status.value == "failed" and failed.error is not None
        assert failed.error.code == "transfer_failed" and "nothing was kept" in \
            failed.error.message
        assert _outcome_actions(st, getfile) == ["evidence.failed", "command.failed"]
        assert not temp.exists()
        assert not st.plane.client.exists(st.plane.keys.xfer(getfile))
        assert not (st.plane.settings.evidence_path() / "sha256").exists() or not any(
            (st.plane.settings.evidence_path() / "sha256").rglob("*"))

        assert Reaper(st.plane).sweep() == 0  # later passes record nothing more
        assert _outcome_actions(st, waited) == ["command.completed"]
        assert _outcome_actions(st, getfile) == ["evidence.failed", "command.failed"]
        open_ids = st.plane.client.smembers(st.plane.keys.open_commands)
        assert waited.encode() not in open_ids and getfile.encode() not in open_ids
