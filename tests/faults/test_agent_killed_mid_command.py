"""An agent SIGKILLed in the middle of a destructive command: after its restart the command
never runs again (the same message delivered again is refused by the ledger on the endpoint's
disk), and the command still ends with one audited outcome: failed, the agent silent."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

import orchestrator.commands.dispatch as dispatch_module
from orchestrator.files.library import library_of
from orchestrator.local.agents import LocalAgent
from tasks.envelope import CommandStatus
from tests.security.by_hand import agent_entries, queued_messages, wait_for
from tests.stack import new_device_id

#: The command's time limit (its script's is 5 s less): the waiter gives up on a silent
#: agent that long after the start, plus its grace.
TIME_LIMIT_S = 7.5
#: A script that appends one line (its destructive act), says it is under way, then works on.
APPEND_THEN_WORK = b'#!/bin/sh\necho ran >> "$1"\necho $$ > "$2"\nsleep 300\n'


def test_a_destructive_command_cut_by_sigkill_never_runs_again_and_ends_audited(
        stack_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(dispatch_module, "WAIT_GRACE_S", 1.0)
    device = new_device_id("sigkill")
    marks, running = tmp_path / "marks.txt", tmp_path / "running"
    with stack_factory([device], command_time_limit_s=TIME_LIMIT_S,
                       command_expiry_s=60.0) as st:
        agent = st.agents[device]
        script = f"append-{uuid.uuid4().hex[:8]}.sh"
        library_of(st.plane).add(script, APPEND_THEN_WORK, "admin")
        # Sent while the agent is down, so the very message it takes can be delivered again.
        _kill(agent)
        session = st.open_session(device)
        with st.client() as http:
            resp = http.post(f"/sessions/{session}/commands",
                             json={"line": f"runscript {script} -- {marks} {running}",
                                   "background": True})
        assert resp.status_code == 202, resp.text
        command_id = str(resp.json()["command_id"])
        message = wait_for(lambda: queued_messages(st, device), "the task in the device queue")

        agent.start()
        script_pid = int(wait_for(lambda: running.exists() and running.read_text().strip(),
                                  "the script to be under way"))
        _kill(agent)
        wait_for(lambda: not _alive(script_pid), "the script to end with its agent", 10)
        assert marks.read_text() == "ran\n"
        assert st.ledger(device).contains(command_id)  # claimed on disk before it ran

        agent.start()
        for key, raw in message:  # delivered again, as a broker's redelivery would
            st.plane.client.lpush(key, raw)
        (refusal,) = wait_for(lambda: [e for e in agent_entries(st, device, "replayed")
                                       if e.details["command_id"] == command_id],
                              "the restarted agent's refusal")
        # The ledger's words (it is asked before Redis): it remembered across the kill.
        assert refusal.details["message"] == (
            f"command {command_id} was already started once; never run twice")

        done = wait_for(lambda: _recorded(st, command_id), "the command's outcome",
                        TIME_LIMIT_S + 15)
        assert done["status"] == CommandStatus.FAILED.value, done
        assert done["error"]["code"] == "agent_silent", done
        outcomes = [e.action for e in st.plane.audit.read(command=command_id)
                    if e.action.startswith("command.") and e.action != "command.requested"]
        assert outcomes == ["command.failed"]
        assert marks.read_text() == "ran\n"  # exactly once
        assert st.plane.audit.verify().ok


def _kill(agent: LocalAgent) -> None:
    """SIGKILL the agent's main process (its pool processes die with it) and reap it."""
    os.kill(agent.pid, signal.SIGKILL)
    agent.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[-1][0] != "Z"


def _recorded(st, command_id: str) -> dict | None:  # type: ignore[no-untyped-def]
    with st.client() as http:
        body: dict = http.get(f"/commands/{command_id}").json()
    return body if body.get("outcome_recorded") else None
