"""The once-only ledger lives on the endpoint: a Redis writer cannot make a command run twice.

The attack, as someone who can write to Redis does it: copy a real signed task message off the
device's queue, let it run, then wipe every trace in Redis that it ran (ledger keys, the
command's state) and push the same bytes again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from orchestrator.files.library import library_of
from tasks.envelope import CommandStatus
from tasks.signing import KeyPair
from tests.security.by_hand import (
    agent_entries,
    queued_envelope,
    queued_messages,
    send_raw,
    victim,
    wait_for,
)
from tests.stack import Stack, new_device_id

#: A library script whose only effect is one line appended to the file it is given.
APPEND_LINE = b'#!/bin/sh\necho ran >> "$1"\n'


def _submit_while_offline(st: Stack, device: str,
                          line: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Submit `line` in the background while the agent is stopped; (command id, the raw
    message bytes as they sit in the device's queue)."""
    st.agents[device].stop()
    session = st.open_session(device)
    with st.client() as http:
        resp = http.post(f"/sessions/{session}/commands", json={"line": f"{line} &"})
    assert resp.status_code == 202, resp.text
    captured = wait_for(lambda: queued_messages(st, device), "the task in the device queue")
    return str(resp.json()["command_id"]), captured


def _replay(st: Stack, command_id: str, captured: list[tuple[str, bytes]]) -> None:
    """Erase in Redis every sign that the command ran, then push the same message again."""
    client, keys = st.plane.client, st.plane.keys
    for key in client.scan_iter(match=f"{keys.prefix}:ledger:*"):
        client.delete(key)
    client.hset(keys.command(command_id), "state", CommandStatus.QUEUED.value)
    client.hdel(keys.command(command_id), "started_at", "finished_at")
    for key, message in captured:
        client.lpush(key, message)


def _refusals(st: Stack, device: str, command_id: str) -> list:
    return [e for e in agent_entries(st, device, "replayed")
            if e.details["command_id"] == command_id]


def test_a_replay_through_redis_after_a_ledger_reset_is_refused_even_after_a_restart(
        stack_factory, tmp_path: Path) -> None:
    device = new_device_id("ledger")
    with stack_factory([device], command_expiry_s=60.0) as st:
        script = f"append-{uuid.uuid4().hex[:8]}.sh"
        library_of(st.plane).add(script, APPEND_LINE, "admin")
        marks = tmp_path / "marks.txt"
        command_id, captured = _submit_while_offline(st, device,
                                                     f"runscript {script} -- {marks}")
        st.agents[device].start()
        wait_for(lambda: st.plane.states.state(command_id) is CommandStatus.COMPLETED,
                 "the first run to complete")
        assert marks.read_text() == "ran\n"
        assert st.ledger(device).contains(command_id)

        _replay(st, command_id, captured)
        (entry,) = wait_for(lambda: _refusals(st, device, command_id), "the replay's refusal")
        assert entry.details["command"] == "runscript" and "args" not in entry.details
        assert marks.read_text() == "ran\n"  # exactly once

        # The ledger is on disk: a restarted agent still knows the command ran.
        st.agents[device].stop()
        st.agents[device].start()
        _replay(st, command_id, captured)
        wait_for(lambda: len(_refusals(st, device, command_id)) == 2,
                 "the refusal after the restart")
        assert marks.read_text() == "ran\n"
        assert st.plane.states.state(command_id) is CommandStatus.QUEUED  # nobody ran it again
        assert st.plane.audit.verify().ok


def test_an_envelope_valid_too_far_ahead_is_refused_and_audited(stack_factory) -> None:
    device = new_device_id("far")
    with stack_factory([device], envelope_max_lifetime_s=600.0) as st, victim() as proc:
        signer = st.plane.signer
        too_long = signer.sign(queued_envelope(st, device, "kill", {"pid": proc.pid},
                                               ttl_s=601.0))
        born_long_ago = queued_envelope(st, device, "kill", {"pid": proc.pid}, ttl_s=60.0)
        born_long_ago = signer.sign(born_long_ago.model_copy(
            update={"issued_at": born_long_ago.issued_at - 3600}))
        for env in (too_long, born_long_ago):
            outcome = send_raw(st, env, device)
            assert outcome["status"] == "rejected", outcome
            assert outcome["error"]["code"] == "expiry_too_far", outcome
            (entry,) = [e for e in agent_entries(st, device, "expiry_too_far")
                        if e.details["command_id"] == env.command_id]
            assert entry.details["key_id"] == signer.key_id
            assert st.plane.states.state(env.command_id) is CommandStatus.QUEUED
            assert not st.ledger(device).contains(env.command_id)
        assert proc.poll() is None, "a refused kill ended the process"


def test_an_agent_whose_ledger_cannot_be_written_refuses_to_start(
        tmp_path: Path, redis_url: str, signing_keys: KeyPair) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {**os.environ, "LR_LEDGER_DIR": str(blocker / "ledger"),
           "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": str(signing_keys.public_path)}
    done = subprocess.run(
        [sys.executable, "-m", "worker_agent.main", "--device-id", "noledger",
         "--redis-url", redis_url], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "ledger" in done.stderr and "LR_LEDGER_DIR" in done.stderr
    assert "Traceback" not in done.stderr
