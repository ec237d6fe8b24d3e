"""The agent marks a command's state before Celery stores its result; under load the result
comes later. A waiter that sees the final state first waits for the result (WAIT_GRACE_S)
instead of recording the command as completed without one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.commands.dispatch import WAIT_GRACE_S, WAIT_SLICE_S, Dispatcher
from orchestrator.state.identity import get_user
from tasks import clock
from tasks.envelope import CommandOutcome, CommandStatus
from tasks.signing import KeyPair
from tests.stack import Stack, new_device_id, own_prefix_stack, purge_device_queue

pytestmark = pytest.mark.integration


@pytest.fixture
def quiet_device(redis_url: str, tmp_path: Path, signing_keys: KeyPair
                 ) -> Iterator[tuple[Stack, str]]:
    """A stack and a registered, online device whose agent this test plays by hand."""
    device = new_device_id("late")
    with own_prefix_stack(redis_url, [], tmp_path, signing=signing_keys) as st:
        keys = st.plane.keys
        st.plane.client.hset(keys.device(device),
                             mapping={"id": device, "last_seen": repr(clock.now() + 600)})
        st.plane.client.sadd(keys.devices, device)
        try:
            yield st, device
        finally:
            purge_device_queue(st.plane, device)


def test_a_result_stored_after_the_final_state_still_reaches_the_waiter(
        quiet_device: tuple[Stack, str]) -> None:
    stack, device = quiet_device
    plane = stack.plane
    admin = get_user(plane.client, plane.keys, "admin")
    session = stack.open_session(device)
    dispatcher = Dispatcher(plane)
    record = dispatcher.submit(admin, session, "dir /tmp")
    late_s = WAIT_SLICE_S * 3
    assert late_s < WAIT_GRACE_S
    outcome = CommandOutcome(
        command_id=record.command_id, device_id=device, command="dir",
        status=CommandStatus.COMPLETED, started_at=clock.now(), finished_at=clock.now(),
        result={"path": "/tmp", "entries": [], "unreadable": 0})

    def agent_answers_late() -> None:
        time.sleep(0.2)
        plane.states.transition(record.command_id, CommandStatus.COMPLETED,
                                [CommandStatus.QUEUED])
        time.sleep(late_s)  # the waiter's slices see `completed` with no result yet
        plane.celery.backend.store_result(record.command_id, outcome.model_dump(mode="json"),
                                          "SUCCESS")

    agent = threading.Thread(target=agent_answers_late)
    agent.start()
    try:
        done = dispatcher.wait(record)
    finally:
        agent.join()
    assert done.status is CommandStatus.COMPLETED
    assert done.error is None, done.error
    assert done.result is not None and done.result["path"] == "/tmp"
