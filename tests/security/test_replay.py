"""The agent never runs one command id twice, whatever the broker redelivers."""

from __future__ import annotations

from tasks.envelope import CommandEnvelope
from tasks.queues import queue_for
from tasks.registry import REGISTRY
from tests.stack import new_device_id


def test_a_replayed_envelope_is_refused(stack_factory) -> None:
    device = new_device_id("replay")
    with stack_factory([device]) as st:
        session = st.open_session(device)
        first = st.run(session, "dir /")
        assert first["status"] == "completed"
        envelope = CommandEnvelope(
            command_id=first["command_id"], device_id=device, session_id=session,
            user="admin", command="dir", args={"path": "/"}, issued_at=first["created_at"],
            expires_at=first["created_at"] + 3600,
        )
        replay = st.plane.celery.send_task(
            REGISTRY["dir"].task_name, args=[envelope.model_dump(mode="json")],
            queue=queue_for(device))
        outcome = replay.get(timeout=20)
        assert outcome["status"] == "rejected"
        assert outcome["error"]["code"] == "replayed"


def test_an_envelope_for_another_device_is_refused(stack_factory) -> None:
    device = new_device_id("mine")
    with stack_factory([device]) as st:
        envelope = CommandEnvelope(
            command_id="c-foreign", device_id="someone-else", session_id="S1", user="admin",
            command="dir", args={}, issued_at=0, expires_at=4_000_000_000,
        )
        result = st.plane.celery.send_task(
            REGISTRY["dir"].task_name, args=[envelope.model_dump(mode="json")],
            queue=queue_for(device))
        outcome = result.get(timeout=20)
        assert outcome["status"] == "rejected"
        assert outcome["error"]["code"] == "wrong_device"


def test_the_ledger_refuses_a_second_start_even_if_the_state_is_reset(stack_factory) -> None:
    device = new_device_id("ledger")
    with stack_factory([device]) as st:
        session = st.open_session(device)
        first = st.run(session, "dir /")
        assert first["status"] == "completed"
        # Someone (or a bug) puts the command back to queued: the ledger still says it started.
        st.plane.client.hset(st.plane.keys.command(first["command_id"]), "state", "queued")
        envelope = CommandEnvelope(
            command_id=first["command_id"], device_id=device, session_id=session,
            user="admin", command="dir", args={"path": "/"}, issued_at=first["created_at"],
            expires_at=first["created_at"] + 3600,
        )
        outcome = st.plane.celery.send_task(
            REGISTRY["dir"].task_name, args=[envelope.model_dump(mode="json")],
            queue=queue_for(device)).get(timeout=20)
        assert outcome["status"] == "rejected"
        assert outcome["error"]["code"] == "replayed"
        assert st.plane.states.state(first["command_id"]) == "queued"  # nothing ran it again
