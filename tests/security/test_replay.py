"""The agent never runs one command id twice, nor a command addressed to another device."""

from __future__ import annotations

from tasks.envelope import CommandEnvelope
from tests.security.by_hand import send_duplicate, send_raw
from tests.stack import Stack, new_device_id


def completed_dir(st: Stack, device: str) -> CommandEnvelope:
    """Run `dir /` through the orchestrator; return that command again, validly signed.

    Signed with the orchestrator's own key, so only the once-only checks can stop it.
    """
    session = st.open_session(device)
    first = st.run(session, "dir /")
    assert first["status"] == "completed"
    return st.plane.signer.sign(CommandEnvelope(
        command_id=first["command_id"], device_id=device, session_id=session,
        user="admin", command="dir", args={"path": "/"}, issued_at=first["created_at"],
        expires_at=first["created_at"] + 3600,
    ))


def test_a_replayed_envelope_is_refused(stack_factory) -> None:
    device = new_device_id("replay")
    with stack_factory([device]) as st:
        refusal = send_duplicate(st, completed_dir(st, device), device)
        assert refusal.decision == "rejected" and refusal.details["reason"] == "replayed"


def test_an_envelope_for_another_device_is_refused(stack_factory) -> None:
    device = new_device_id("mine")
    with stack_factory([device]) as st:
        envelope = st.plane.signer.sign(CommandEnvelope(
            command_id="c-foreign", device_id="someone-else", session_id="S1", user="admin",
            command="dir", args={}, issued_at=0, expires_at=4_000_000_000,
        ))
        outcome = send_raw(st, envelope, device)
        assert outcome["status"] == "rejected"
        assert outcome["error"]["code"] == "wrong_device"


def test_the_ledger_refuses_a_second_start_even_if_the_state_is_reset(stack_factory) -> None:
    device = new_device_id("ledger")
    with stack_factory([device]) as st:
        envelope = completed_dir(st, device)
        # Someone (or a bug) puts the command back to queued: the ledger still says it started.
        st.plane.client.hset(st.plane.keys.command(envelope.command_id), "state", "queued")
        refusal = send_duplicate(st, envelope, device)
        assert refusal.decision == "rejected" and refusal.details["reason"] == "replayed"
        assert st.plane.states.state(envelope.command_id) == "queued"  # nothing ran it again
