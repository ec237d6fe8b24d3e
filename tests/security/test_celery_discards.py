"""What Celery drops before the executor runs is audited too, and results stay out of the log.

A message past its `expires`, under a task name the agent does not run, or one Celery cannot
decode or will not accept never reaches our executor; the agent still records each of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.queues import queue_for
from tasks.registry import REGISTRY
from tasks.signing import KeyPair
from tests.security.by_hand import agent_entries, queued_envelope, wait_for
from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture(scope="module")
def st(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
       signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one real agent on a prefix of this module's own."""
    with own_prefix_stack(redis_url, [new_device_id("drop")], tmp_path_factory.mktemp("drop"),
                          signing=signing_keys) as stack:
        yield stack


@pytest.fixture(scope="module")
def device(st: Stack) -> str:
    return next(iter(st.agents))


def _raw_message(device: str, task: str, task_id: str, body: bytes,
                 content_type: str = "application/json") -> bytes:
    """A task message as the Redis transport stores it, with any body and content type."""
    return json.dumps({
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id,
                    "retries": 0, "timelimit": [None, None], "argsrepr": "()",
                    "kwargsrepr": "{}"},
        "properties": {"correlation_id": task_id, "delivery_mode": 2, "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": queue_for(device)},
                       "body_encoding": "base64", "delivery_tag": uuid.uuid4().hex},
    }).encode()


def _entry_for(st: Stack, device: str, reason: str, task_id: str,
               action: str = "agent.rejected") -> dict:
    (entry,) = wait_for(lambda: [e for e in agent_entries(st, device, reason, action)
                                 if e.details["command_id"] == task_id],
                        f"an {action} entry {reason} for {task_id}")
    assert entry.actor == f"agent:{device}" and entry.decision == "rejected"
    return dict(entry.details)


def test_a_task_whose_message_expired_is_audited(st: Stack, device: str) -> None:
    env = st.plane.signer.sign(queued_envelope(st, device, "dir", {"path": "/"}))
    st.plane.celery.send_task(REGISTRY["dir"].task_name, args=[env.model_dump(mode="json")],
                              queue=queue_for(device), task_id=env.command_id,
                              expires=datetime.now(UTC) - timedelta(seconds=5))
    details = _entry_for(st, device, "celery_expired", env.command_id, "agent.expired")
    assert details["command"] == "dir" and details["task"] == REGISTRY["dir"].task_name
    assert "args" not in details
    assert st.plane.states.state(env.command_id) == "queued"  # never started


def test_a_task_under_an_unregistered_name_is_audited(st: Stack, device: str) -> None:
    task_id = uuid.uuid4().hex
    st.plane.celery.send_task("lr.cmd.format_disk", args=[{"secret_arg": "x"}],
                              queue=queue_for(device), task_id=task_id)
    details = _entry_for(st, device, "unregistered_task", task_id)
    assert details["task"] == "lr.cmd.format_disk"
    assert "secret_arg" not in json.dumps(details)


@pytest.mark.parametrize(("body", "content_type"), [
    (b"{not json", "application/json"),
    (b"\x80\x04K\x01.", "application/x-python-serialize"),  # pickle: never accepted
])
def test_a_message_celery_cannot_decode_or_accept_is_audited(
        st: Stack, device: str, body: bytes, content_type: str) -> None:
    task_id = uuid.uuid4().hex
    st.plane.client.lpush(queue_for(device),
                          _raw_message(device, REGISTRY["dir"].task_name, task_id, body,
                                       content_type))
    details = _entry_for(st, device, "undecodable", task_id)
    assert details["task"] == REGISTRY["dir"].task_name
    # The agent still consumes afterwards.
    session = st.open_session(device)
    assert st.run(session, "dir /")["status"] == "completed"


def test_queue_items_that_are_no_message_are_audited_and_never_stop_the_agent(
        st: Stack, device: str) -> None:
    pid = st.agents[device].pid
    before = len(agent_entries(st, device, "undecodable"))
    items = [b"garbage{", b"1", b"[]", b"{}", b'{"headers": 3, "properties": 5}']
    for item in items:
        st.plane.client.lpush(queue_for(device), item)
    wait_for(lambda: len(agent_entries(st, device, "undecodable")) - before == len(items),
             "an entry per dropped item")
    assert st.agents[device].proc is not None and st.agents[device].proc.poll() is None
    assert st.agents[device].pid == pid
    session = st.open_session(device)
    assert st.run(session, "dir /")["status"] == "completed"


def test_the_agents_log_never_holds_a_command_result(st: Stack, device: str,
                                                     tmp_path: Path) -> None:
    subject = tmp_path / "subject.bin"
    subject.write_bytes(uuid.uuid4().bytes)
    value = hashlib.sha256(subject.read_bytes()).hexdigest()  # only ever in the result
    session = st.open_session(device)
    body = st.run(session, f"getfilehash {subject}")
    assert body["status"] == "completed" and body["result"]["sha256"] == value, body
    log_path = st.agents[device].log_path
    assert log_path is not None
    command_id = body["command_id"]
    line = wait_for(lambda: next((ln for ln in log_path.read_text().splitlines()
                                  if command_id in ln and "succeeded in" in ln), None),
                    "the success line in the agent's log")
    assert re.search(r"succeeded in [0-9.e-]+s$", line.rstrip()), line  # no value after it
    assert value not in log_path.read_text()
