"""A real agent runs only what the orchestrator's key signed, for this device, once, in time.

Every forged task below would end a real process if the agent ran it; each must be refused
with its reason, leave the process alive, and leave an `agent.*` entry in a chain that verifies.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.envelope import CommandEnvelope, CommandStatus
from tasks.queues import queue_for
from tasks.registry import REGISTRY
from tasks.signing import KeyPair, Signer, generate_keypair
from tests.security.by_hand import queued_envelope, send_duplicate, send_raw, victim
from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture(scope="module")
def st(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
       signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one real agent trusting `signing_keys`, on a prefix of this module's own."""
    with own_prefix_stack(redis_url, [new_device_id("sig")], tmp_path_factory.mktemp("sig"),
                          signing=signing_keys) as stack:
        yield stack


@pytest.fixture(scope="module")
def device(st: Stack) -> str:
    return next(iter(st.agents))


@pytest.fixture(scope="module")
def intruder(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """A valid Ed25519 key the agent was never told to trust."""
    return Signer.from_file(generate_keypair(tmp_path_factory.mktemp("intruder")).private_path)


def kill_envelope(st: Stack, device: str, pid: int, **kw: float) -> CommandEnvelope:
    return queued_envelope(st, device, "kill", {"pid": pid}, **kw)


def assert_refused_and_audited(st: Stack, device: str, sent: CommandEnvelope,
                               outcome: dict | None, status: str, reason: str) -> None:
    """The outcome names `reason`; one agent entry records it (no secrets); the chain holds.

    `outcome` None: a duplicate of a command that started, which answers nothing.
    """
    if outcome is not None:
        assert outcome["status"] == status, outcome
        assert outcome["error"]["code"] == reason, outcome
    action = "agent.expired" if status == "expired" else "agent.rejected"
    entries = [e for e in st.plane.audit.read(command=sent.command_id) if e.action == action]
    assert len(entries) == 1, st.plane.audit.read(command=sent.command_id)
    (entry,) = entries
    assert entry.actor == f"agent:{device}"
    assert entry.target == sent.command_id and entry.decision == "rejected"
    assert entry.details["reason"] == reason
    assert entry.details["command_id"] == sent.command_id
    assert entry.details["device"] == device and entry.details["command"] == sent.command
    assert entry.details["key_id"] == sent.key_id
    assert "args" not in entry.details and "signature" not in entry.details
    stored = entry.model_dump_json()
    if sent.signature:
        assert sent.signature not in stored
    assert st.plane.audit.verify().ok


def assert_still_alive(proc: subprocess.Popen[bytes]) -> None:
    time.sleep(0.2)  # a kill that did run would have ended it by now (SIGTERM, Python exits)
    assert proc.poll() is None, "a refused kill ended the process"


def test_an_unsigned_task_is_refused_and_never_runs(st: Stack, device: str) -> None:
    with victim() as proc:
        env = kill_envelope(st, device, proc.pid)
        outcome = send_raw(st, env, device)
        assert_still_alive(proc)
    assert_refused_and_audited(st, device, env, outcome, "rejected", "unsigned")
    assert st.plane.states.state(env.command_id) is CommandStatus.QUEUED


def test_a_task_signed_by_another_key_is_refused(
    st: Stack, device: str, intruder: Signer
) -> None:
    with victim() as proc:
        env = intruder.sign(kill_envelope(st, device, proc.pid))
        outcome = send_raw(st, env, device)
        assert_still_alive(proc)
    assert_refused_and_audited(st, device, env, outcome, "rejected", "unknown_key")
    assert intruder.key_id in outcome["error"]["message"]
    assert st.plane.signer.key_id in outcome["error"]["message"]


def test_a_task_claiming_the_orchestrators_key_id_is_refused(
    st: Stack, device: str, intruder: Signer
) -> None:
    with victim() as proc:
        claimed = kill_envelope(st, device, proc.pid).model_copy(
            update={"key_id": st.plane.signer.key_id})
        env = claimed.model_copy(
            update={"signature": intruder.sign_bytes(claimed.canonical_bytes())})
        outcome = send_raw(st, env, device)
        assert_still_alive(proc)
    assert_refused_and_audited(st, device, env, outcome, "rejected", "bad_signature")


def test_a_task_changed_after_signing_is_refused(st: Stack, device: str) -> None:
    with victim() as proc, victim() as decoy:
        signed = st.plane.signer.sign(kill_envelope(st, device, decoy.pid))
        env = signed.model_copy(update={"args": {"pid": proc.pid}})
        outcome = send_raw(st, env, device)
        assert_still_alive(proc)
        assert decoy.poll() is None
    assert_refused_and_audited(st, device, env, outcome, "rejected", "bad_signature")


def test_a_signed_task_for_another_device_is_refused(st: Stack, device: str) -> None:
    with victim() as proc:
        env = st.plane.signer.sign(kill_envelope(st, "someone-else", proc.pid))
        outcome = send_raw(st, env, device)  # but put on this device's queue
        assert_still_alive(proc)
    assert_refused_and_audited(st, device, env, outcome, "rejected", "wrong_device")


def test_an_expired_signed_task_is_refused(st: Stack, device: str) -> None:
    with victim() as proc:
        env = st.plane.signer.sign(kill_envelope(st, device, proc.pid, ttl_s=-1.0))
        outcome = send_raw(st, env, device)
        assert_still_alive(proc)
    assert_refused_and_audited(st, device, env, outcome, "expired", "expired")
    assert st.plane.states.state(env.command_id) is CommandStatus.EXPIRED


def test_a_signed_task_re_sent_under_another_task_id_is_refused(
    st: Stack, device: str
) -> None:
    with victim() as proc:
        env = st.plane.signer.sign(kill_envelope(st, device, proc.pid))
        outcome = send_raw(st, env, device, task_id=uuid.uuid4().hex)
        assert_still_alive(proc)
    assert_refused_and_audited(st, device, env, outcome, "rejected", "wrong_task_id")


def test_a_signed_task_runs_once_and_its_replay_is_refused(st: Stack, device: str) -> None:
    with victim() as proc:
        env = st.plane.signer.sign(kill_envelope(st, device, proc.pid))
        first = send_raw(st, env, device)
        assert first["status"] == "completed", first  # the genuine task does run
        proc.wait(timeout=10)
    finished = st.plane.states.get(env.command_id)["finished_at"]
    send_duplicate(st, env, device)
    assert_refused_and_audited(st, device, env, None, "rejected", "replayed")
    assert st.plane.states.state(env.command_id) is CommandStatus.COMPLETED
    assert st.plane.states.get(env.command_id)["finished_at"] == finished


def test_a_malformed_envelope_is_refused_and_audited(st: Stack, device: str) -> None:
    command_id = uuid.uuid4().hex
    result = st.plane.celery.send_task(
        REGISTRY["kill"].task_name, args=[{"command_id": command_id, "signature": "x"}],
        queue=queue_for(device), task_id=command_id)
    outcome = dict(result.get(timeout=20))
    assert outcome["status"] == "rejected" and outcome["error"]["code"] == "malformed_envelope"
    (entry,) = st.plane.audit.read(command=command_id)
    assert entry.action == "agent.rejected" and entry.details["reason"] == "malformed_envelope"
    assert entry.details["key_id"] is None
    assert st.plane.audit.verify().ok


def test_an_agent_without_a_readable_public_key_refuses_to_start(
    tmp_path: Path, redis_url: str
) -> None:
    missing = tmp_path / "absent.pub"
    done = subprocess.run(
        [sys.executable, "-m", "worker_agent.main", "--device-id", "nokey",
         "--redis-url", redis_url, "--orchestrator-key", str(missing)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert str(missing) in done.stderr and "lr admin keys init" in done.stderr
    assert "Traceback" not in done.stderr
