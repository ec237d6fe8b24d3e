"""An agent obeys no Celery remote control that changes it; a cancel must be signed.

Anyone who can write to the broker can run `celery control shutdown` against a node. The
agent answers read-only inspection, refuses (and audits) everything else, and stops a running
command only on a cancel order the orchestrator signed for this device, in time.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from celery.result import AsyncResult

from tasks import clock
from tasks.app import celery_url
from tasks.cancel import CANCEL_CONTROL, cancel_order
from tasks.envelope import CommandEnvelope, CommandStatus
from tasks.queues import queue_for
from tasks.registry import REGISTRY
from tasks.signing import KeyPair, Signer, generate_keypair
from tests.security.by_hand import agent_entries, agent_node, queued_envelope, wait_for
from tests.stack import Stack, new_device_id, own_prefix_stack

#: The celery command line of this environment.
CELERY = str(Path(sys.executable).with_name("celery"))
#: A sparse file this large takes the agent far longer to hash than any test here waits.
HUGE_BYTES = 64 * 1024**3

#: `celery control` commands that would change a worker, with arguments the CLI accepts.
CHANGING = {
    "shutdown": [],
    "pool_restart": [],
    "autoscale": ["4", "1"],
    "add_consumer": ["lr.device.elsewhere"],
    "cancel_consumer": ["{queue}"],
    "rate_limit": [REGISTRY["dir"].task_name, "1/h"],
    "time_limit": [REGISTRY["dir"].task_name, "1", "2"],
    "revoke": ["{marker}"],
}
#: More of them, sent from this process (a CLI start costs a second or more each).
CHANGING_IN_PROCESS = ("terminate", "pool_grow", "pool_shrink", "disable_events",
                       "enable_events", "election", "revoke_by_stamped_headers")


@pytest.fixture(scope="module")
def st(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
       signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one real agent on a prefix of this module's own."""
    with own_prefix_stack(redis_url, [new_device_id("rc")], tmp_path_factory.mktemp("rc"),
                          signing=signing_keys) as stack:
        yield stack


@pytest.fixture(scope="module")
def device(st: Stack) -> str:
    return next(iter(st.agents))


@pytest.fixture
def running(st: Stack, device: str, tmp_path: Path) -> Iterator[CommandEnvelope]:
    """A signed `getfilehash` of a huge sparse file, started on the agent (and stopped after)."""
    env = _start_long_command(st, device, tmp_path)
    try:
        yield env
    finally:
        _cancel(st, device, st.plane.signer.sign(
            cancel_order(env.command_id, device, clock.now())))


def _start_long_command(st: Stack, device: str, tmp_path: Path) -> CommandEnvelope:
    """Send a signed `getfilehash` of a huge sparse file and wait until it runs."""
    huge = tmp_path / "huge.img"
    with open(huge, "wb") as f:
        f.truncate(HUGE_BYTES)
    env = st.plane.signer.sign(queued_envelope(st, device, "getfilehash", {"path": str(huge)}))
    st.plane.celery.send_task(REGISTRY["getfilehash"].task_name,
                              args=[env.model_dump(mode="json")], queue=queue_for(device),
                              task_id=env.command_id, argsrepr=f"<getfilehash {env.command_id}>")
    wait_for(lambda: st.plane.states.state(env.command_id) is CommandStatus.RUNNING,
             "the command to start")
    return env


def _celery_control(url: str, command: str, args: list[str], node: str) -> subprocess.Popen:
    return subprocess.Popen([CELERY, "-b", url, "control", command, *args, "-d", node,
                             "-t", "5", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cancel(st: Stack, device: str, order: Any) -> dict[str, Any]:
    """Broadcast a cancel to the device's node; its one reply."""
    body = order.model_dump(mode="json") if hasattr(order, "model_dump") else order
    replies = st.plane.celery.control.broadcast(
        CANCEL_CONTROL, arguments={"order": body}, destination=[agent_node(st, device)],
        reply=True, timeout=5)
    assert len(replies) == 1, replies
    (reply,) = replies[0].values()
    return dict(reply)


def _refused(st: Stack, device: str, reason: str, command_id: str) -> list:
    return [e for e in agent_entries(st, device, reason)
            if e.details["command_id"] == command_id and e.details["command"] == CANCEL_CONTROL]


def test_celery_control_commands_are_refused_audited_and_the_agent_runs_on(
        st: Stack, device: str) -> None:
    url = celery_url(st.plane.settings.redis_url or "")
    node = agent_node(st, device)
    marker = uuid.uuid4().hex
    pid = st.agents[device].pid
    before = len(agent_entries(st, device, "remote_control"))
    procs = {name: _celery_control(url, name, [a.format(queue=queue_for(device), marker=marker)
                                               for a in args], node)
             for name, args in CHANGING.items()}
    try:
        outputs = {name: proc.communicate(timeout=60) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, (out, err) in outputs.items():
        assert procs[name].returncode == 0, (name, err)
        assert "obey no remote control" in out, (name, out)

    entries = agent_entries(st, device, "remote_control")[before:]
    assert sorted(e.details["method"] for e in entries) == sorted(CHANGING)
    for entry in entries:
        assert entry.actor == f"agent:{device}" and entry.decision == "rejected"
        assert marker not in entry.model_dump_json()  # no arguments
    assert st.agents[device].proc is not None and st.agents[device].proc.poll() is None
    assert st.agents[device].pid == pid
    session = st.open_session(device)
    assert st.run(session, "dir /")["status"] == "completed"
    assert st.plane.audit.verify().ok


def test_unknown_configuration_dumping_and_other_changing_methods_are_refused(
        st: Stack, device: str) -> None:
    node = agent_node(st, device)
    for method in ("conf", "report", "no_such_method", "hello", *CHANGING_IN_PROCESS):
        replies = st.plane.celery.control.broadcast(method, destination=[node], reply=True,
                                                    timeout=5)
        assert "obey no remote control" in replies[0][node]["error"], replies
        assert [e for e in agent_entries(st, device, "remote_control")
                if e.details["method"] == method]
    session = st.open_session(device)
    assert st.run(session, "dir /")["status"] == "completed"


def test_read_only_inspection_is_answered(st: Stack, device: str,
                                          running: CommandEnvelope) -> None:
    node = agent_node(st, device)
    inspect = st.plane.celery.control.inspect(destination=[node], timeout=5)
    assert inspect.ping() == {node: {"ok": "pong"}}
    (task,) = inspect.active()[node]
    assert task["id"] == running.command_id
    assert task["args"] == f"<getfilehash {running.command_id}>"  # argsrepr, not the envelope
    assert running.command_id in inspect.query_task(running.command_id)[node]
    assert REGISTRY["dir"].task_name in inspect.registered()[node]
    assert [q["name"] for q in inspect.active_queues()[node]] == [queue_for(device)]
    assert "pool" in inspect.stats()[node]


def test_a_forged_cancel_is_refused_and_audited_and_a_signed_one_stops_the_command(
        st: Stack, device: str, running: CommandEnvelope, tmp_path: Path) -> None:
    command_id = running.command_id
    now = clock.now()
    signer = st.plane.signer
    intruder = Signer.from_file(generate_keypair(tmp_path / "intruder").private_path)
    forged = {
        "malformed_cancel": {"command_id": command_id, "signature": "x"},
        "unsigned": cancel_order(command_id, device, now),
        "unknown_key": intruder.sign(cancel_order(command_id, device, now)),
        "bad_signature": signer.sign(cancel_order(command_id, device, now)).model_copy(
            update={"expires_at": now + 30}),
        "wrong_device": signer.sign(cancel_order(command_id, "someone-else", now)),
        "expired": signer.sign(cancel_order(command_id, device, now - 120)),
        "expiry_too_far": signer.sign(cancel_order(command_id, device, now).model_copy(
            update={"expires_at": now + 8 * 86400})),
    }
    for reason, order in forged.items():
        reply = _cancel(st, device, order)
        assert "error" in reply, (reason, reply)
        assert len(_refused(st, device, reason, command_id)) == 1, reason
    assert st.plane.states.state(command_id) is CommandStatus.RUNNING
    inspect = st.plane.celery.control.inspect(destination=[agent_node(st, device)], timeout=5)
    assert [t["id"] for t in inspect.active()[agent_node(st, device)]] == [command_id]

    reply = _cancel(st, device, signer.sign(cancel_order(command_id, device, clock.now())))
    assert reply == {"ok": f"{command_id}: terminated"}
    result = AsyncResult(command_id, app=st.plane.celery)
    wait_for(lambda: result.state == "REVOKED", "the task to be terminated")
    (done,) = [e for e in agent_entries(st, device, action="agent.cancelled")
               if e.details["command_id"] == command_id]
    assert done.details["terminated"] is True and done.details["key_id"] == signer.key_id
    session = st.open_session(device)
    assert st.run(session, "dir /")["status"] == "completed"
    assert st.plane.audit.verify().ok


def test_with_the_prefork_pool_a_signed_cancel_terminates_the_commands_pool_process(
        stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    device = new_device_id("rcp")
    with stack_factory([device], agent_pool="prefork") as pst:
        agent = psutil.Process(pst.agents[device].pid)
        wait_for(lambda: len(agent.children()) == 2, "the two pool processes")
        pool = {child.pid for child in agent.children()}
        env = _start_long_command(pst, device, tmp_path)
        reply = _cancel(pst, device, pst.plane.signer.sign(
            cancel_order(env.command_id, device, clock.now())))
        assert reply == {"ok": f"{env.command_id}: terminated"}
        result = AsyncResult(env.command_id, app=pst.plane.celery)
        wait_for(lambda: result.state == "REVOKED", "the task to be terminated")
        (done,) = [e for e in agent_entries(pst, device, action="agent.cancelled")
                   if e.details["command_id"] == env.command_id]
        assert done.details["terminated"] is True
        # The pool process that ran it was killed and replaced; the agent serves on.
        wait_for(lambda: len({c.pid for c in agent.children()} - pool) == 1,
                 "the pool process to be replaced")
        session = pst.open_session(device)
        assert pst.run(session, "dir /")["status"] == "completed"
