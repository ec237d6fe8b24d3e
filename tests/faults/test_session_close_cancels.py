"""Closing a session cancels its queued commands: the waiter hears at once, none runs later."""

from __future__ import annotations

import threading
import time
from typing import Any

from tasks.envelope import CommandStatus
from tests.stack import new_device_id


def test_closing_a_session_cancels_its_queued_command(stack_factory, tmp_path) -> None:
    device = new_device_id("close")
    with stack_factory([device], command_expiry_s=30.0) as st:
        session = st.open_session(device)
        st.agents[device].stop()  # the command will sit in the queue
        answer: dict[str, Any] = {}
        waiter = threading.Thread(
            target=lambda: answer.update(st.run(session, f"dir {tmp_path}")))
        waiter.start()
        deadline = time.monotonic() + 10
        while not st.plane.client.llen(st.plane.keys.session_commands(session)):
            assert time.monotonic() < deadline, "the command was never queued"
            time.sleep(0.05)
        closed_at = time.monotonic()
        with st.client() as http:
            assert http.delete(f"/sessions/{session}").status_code == 200
        waiter.join(timeout=20)
        assert not waiter.is_alive()
        assert time.monotonic() - closed_at < 5, "the waiter must not sit out the expiry"
        assert answer["status"] == "cancelled", answer
        command_id = answer["command_id"]

        with st.local_agent(device, tmp_path / "back.log"):
            time.sleep(1.5)  # time to receive and drop the old message
        record = st.plane.states.get(command_id)
        assert record["state"] == CommandStatus.CANCELLED
        assert record.get("started_at", "null") == "null"  # it never started
        actions = [e.action for e in st.plane.audit.read(command=command_id)]
        assert actions[0] == "command.requested"
        assert "command.cancelled" in actions
