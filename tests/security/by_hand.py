"""Tasks put on a device queue by hand, bypassing the orchestrator, as a broker intruder would."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tasks import clock
from tasks.auditchain import AuditEntry
from tasks.envelope import CommandEnvelope
from tasks.queues import queue_for
from tasks.registry import REGISTRY
from tasks.replies import as_text
from tests.stack import Stack

#: Seconds a hand-sent task's result is waited for.
RESULT_TIMEOUT_S = 20

T = TypeVar("T")


def send_raw(st: Stack, envelope: CommandEnvelope, queue_device: str,
             task_id: str | None = None) -> dict[str, Any]:
    """Put an envelope on `queue_device`'s queue as it is, under `task_id` (default its id)."""
    task_id = task_id or envelope.command_id
    # A result stored under this id by an earlier run would answer before the agent does.
    st.plane.celery.AsyncResult(task_id).forget()
    result = st.plane.celery.send_task(
        REGISTRY[envelope.command].task_name, args=[envelope.model_dump(mode="json")],
        queue=queue_for(queue_device), task_id=task_id)
    return dict(result.get(timeout=RESULT_TIMEOUT_S))


def send_duplicate(st: Stack, envelope: CommandEnvelope, queue_device: str) -> AuditEntry:
    """Deliver again a command that already started once; the agent's audited refusal.

    A duplicate never answers in its first run's place: nothing is stored under its id.
    """
    def refusals() -> list[AuditEntry]:
        return [e for e in agent_entries(st, queue_device, "replayed")
                if e.details.get("command_id") == envelope.command_id]

    seen = len(refusals())
    result = st.plane.celery.AsyncResult(envelope.command_id)
    result.forget()  # what the first run stored: the duplicate must not store anything
    st.plane.celery.send_task(
        REGISTRY[envelope.command].task_name, args=[envelope.model_dump(mode="json")],
        queue=queue_for(queue_device), task_id=envelope.command_id)
    entry = wait_for(lambda: refusals()[seen:], "the agent's refusal", RESULT_TIMEOUT_S)[0]
    time.sleep(0.3)  # a result would be stored right after the refusal is audited
    assert result.state == "PENDING", result.state
    return entry


def queued_envelope(st: Stack, device: str, command: str, args: dict[str, Any],
                    *, ttl_s: float = 600.0) -> CommandEnvelope:
    """An unsigned envelope whose command the orchestrator's state knows as queued.

    The state makes the agent willing to start it, so only the check under test stops it.
    """
    command_id = uuid.uuid4().hex
    key = st.plane.keys.command(command_id)
    st.plane.client.hset(key, mapping={"state": "queued", "device_id": device,
                                       "command": command})
    st.plane.client.expire(key, 3600)
    now = clock.now()
    return CommandEnvelope(command_id=command_id, device_id=device, session_id="S-by-hand",
                           user="admin", command=command, args=args, issued_at=now,
                           expires_at=now + ttl_s)


@contextmanager
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A real process a forged `kill` would end; stopped afterwards whatever happened."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def agent_node(st: Stack, device: str) -> str:
    """The Celery node name of a device's running agent (`lr-agent-<device>@<host>`)."""
    host = as_text(st.plane.client.hget(st.plane.keys.device(device), "hostname"))
    assert host, f"device {device} is not registered"
    return f"lr-agent-{device}@{host}"


def queued_messages(st: Stack, device: str) -> list[tuple[str, bytes]]:
    """Every raw message waiting in a device's queue (one Redis list per priority step), as
    (list key, message bytes): what anyone who reads Redis can copy."""
    out = []
    for key in st.plane.client.scan_iter(match=f"{queue_for(device)}*"):
        out += [(as_text(key), bytes(item)) for item in st.plane.client.lrange(key, 0, -1)]
    return out


def wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = 15.0) -> T:
    """Poll `probe` until it answers something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def agent_entries(st: Stack, device: str, reason: str | None = None,
                  action: str = "agent.rejected") -> list[AuditEntry]:
    """The agent's own audit entries of one action (and reason, if given), oldest first."""
    return [e for e in st.plane.audit.read(actor=f"agent:{device}")
            if e.action == action and (reason is None or e.details.get("reason") == reason)]
