"""Redis restarted (stopped cleanly, or killed as a crash would) while commands are queued and
running: none is lost, none runs twice, each ends with one audited outcome. The time from Redis
being back to the first command completing again is measured and printed (`pytest -s`; also a
property of the test in a JUnit report). The Redis is this test's own (append-only file, so what
was queued survives the restart; Redis writes it before it answers, so a SIGKILL loses nothing
it acknowledged), never the shared one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import orchestrator.commands.reaper as reaper_module
from orchestrator.commands.reaper import Reaper
from orchestrator.commands.records import load_record
from orchestrator.files.library import library_of
from tasks import clock
from tasks.signing import KeyPair
from tests.security.by_hand import queued_messages
from tests.stack import Stack, live_stack, new_device_id
from tests.throwaway_redis import ThrowawayRedis

#: Commands sent before the restart: two run (the agent's two pool processes), the rest wait.
COMMANDS = 6
#: How long Redis stays down.
DOWN_S = 1.5
#: Every command has ended, with its outcome recorded, within this long of Redis being back.
SETTLED_WITHIN_S = 60.0
#: A script whose start and end leave one line each: a second run would show.
MARK_START_AND_END = b'#!/bin/sh\necho "start $2" >> "$1"\nsleep 1\necho "end $2" >> "$1"\n'


def _submit(st: Stack, session: str, line: str) -> str:
    with st.client() as http:
        resp = http.post(f"/sessions/{session}/commands", json={"line": line, "background": True})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["command_id"])


@pytest.mark.parametrize("down", ["stopped", "killed"])
def test_commands_queued_and_running_across_a_redis_restart_run_once_and_all_end_audited(
        down: str, throwaway_redis: ThrowawayRedis, tmp_path: Path, signing_keys: KeyPair,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
        record_property: Callable[[str, object], None]) -> None:
    monkeypatch.setattr(reaper_module, "REAP_GRACE_S", 1.0)
    device = new_device_id("restart")
    marks = tmp_path / "marks.txt"
    with live_stack(throwaway_redis.url, "lr", [device], tmp_path, signing=signing_keys,
                    heartbeat_interval_s=1.0, command_expiry_s=SETTLED_WITHIN_S) as st:
        reaper = Reaper(st.plane, interval_s=0.5)  # as `lr orchestrator serve` runs one
        reaper.start()
        request.addfinalizer(reaper.stop)
        script = f"marks-{uuid.uuid4().hex[:8]}.sh"
        library_of(st.plane).add(script, MARK_START_AND_END, "admin")
        session = st.open_session(device)
        ids = [_submit(st, session, f"runscript {script} -- {marks} {n}")
               for n in range(COMMANDS)]
        deadline = time.monotonic() + 20
        while not marks.exists() or marks.read_text().count("start") < 2:
            assert time.monotonic() < deadline, "the first commands did not start"
            time.sleep(0.02)

        queued = len(queued_messages(st, device))
        assert queued >= 1, "no command was left waiting in the queue"

        if down == "killed":
            throwaway_redis.kill()  # SIGKILL: no shutdown, only the append-only file
        else:
            throwaway_redis.stop()  # SIGTERM: a clean restart; the append-only file keeps it all
        time.sleep(DOWN_S)
        throwaway_redis.start()
        back, back_at = time.monotonic(), clock.now()
        first_recorded: float | None = None  # any outcome recorded again
        first_new: float | None = None  # a command started after the restart, completed
        while True:
            records = [load_record(st.plane, i) for i in ids]
            done = [r for r in records if r.outcome_recorded and r.status.value == "completed"]
            if first_recorded is None and done:
                first_recorded = time.monotonic() - back
            if first_new is None and any((r.started_at or 0) > back_at for r in done):
                first_new = time.monotonic() - back
            if all(r.outcome_recorded for r in records):
                break
            assert time.monotonic() - back < SETTLED_WITHIN_S, [
                (r.command_id, r.status.value, r.outcome_recorded) for r in records]
            time.sleep(0.05)
        settled = time.monotonic() - back
        print(f"\nredis {down} and restarted ({queued} queued, 2 running): after Redis was "
              f"back, the first outcome was recorded in {first_recorded or -1:.2f} s, the "
              f"first command started since completed in {first_new or -1:.2f} s, all "
              f"{COMMANDS} in {settled:.2f} s")
        record_property(f"redis_{down}_recovery_first_outcome_s", first_recorded)
        record_property(f"redis_{down}_recovery_first_new_command_s", first_new)

        assert [r.status.value for r in records] == ["completed"] * COMMANDS, [
            (r.status.value, r.error) for r in records]
        lines = marks.read_text().splitlines()
        for n in range(COMMANDS):  # none lost, none twice
            assert lines.count(f"start {n}") == 1 and lines.count(f"end {n}") == 1, lines
        for command_id in ids:
            outcomes = [e.action for e in st.plane.audit.read(command=command_id)
                        if e.action.startswith("command.") and e.action != "command.requested"]
            assert outcomes == ["command.completed"], (command_id, outcomes)
        assert st.plane.audit.verify().ok
