"""An offline device: commands expire instead of hanging, and never run when the agent returns."""

from __future__ import annotations

import time

from tasks.envelope import CommandStatus
from tests.stack import new_device_id


def test_command_for_offline_device_expires_and_never_runs_later(stack_factory, tmp_path) -> None:
    device = new_device_id("off")
    with stack_factory([device], command_expiry_s=2.0) as st:
        session = st.open_session(device)
        st.agents[device].stop()
        started = time.monotonic()
        body = st.run(session, f"fileinfo {tmp_path}")
        waited = time.monotonic() - started
        assert body["status"] == "expired"
        assert "offline" in body["error"]["message"]
        assert waited < 10, "an offline device must not make the analyst wait past the expiry"
        # Nor does the orchestrator keep listening for an answer that will never come.
        consumer = st.plane.celery.backend.result_consumer
        assert consumer._get_key_for_task(body["command_id"]) not in consumer.subscribed_to

        # The agent comes back: the old command must be dropped, not run.
        with st.local_agent(device, tmp_path / "back.log"):
            fresh = st.run(session, "dir /")
            assert fresh["status"] == "completed"
        record = st.plane.states.get(body["command_id"])
        assert record["state"] == CommandStatus.EXPIRED
        assert record.get("started_at", "null") == "null"  # it never started
        assert not st.ledger(device).contains(body["command_id"])
        # Celery dropped the expired message when the agent came back; the agent recorded it.
        entries = st.plane.audit.read(command=body["command_id"])
        assert [e.action for e in entries] == ["command.requested", "command.expired",
                                               "agent.expired"]
        assert entries[-1].details["reason"] == "celery_expired"
