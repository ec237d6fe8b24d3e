"""Starting a playbook run: the start pipeline, the stored text, the signed order, the task.

A run starts in an API request (a person's `lr playbook run`, or an alert) and executes on an
orchestrator worker (`lr orchestrator worker`), never in the request. Starting checks that the
user may open a session on the device and holds the permission of every command the playbook
can send there; each step then goes through the command pipeline again when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.plane import ControlPlane
from orchestrator.playbooks.model import Playbook, bind_inputs, digest_of, load_playbook
from orchestrator.playbooks.orders import (
    RUN_TASK,
    RunOrder,
    new_run_id,
    orchestrator_queue,
    sign_order,
)
from orchestrator.playbooks.runs import RunRecord, RunStatus, RunStore, StepRun, inputs_digest
from orchestrator.policies.checks import authenticate, load_device, requires
from orchestrator.policies.model import PERM_SESSION
from orchestrator.policies.pipeline import Pipeline, Request
from orchestrator.policies.rbac import authorize
from orchestrator.state.identity import User
from tasks import clock
from tasks.parsing import split_line
from tasks.registry import REGISTRY


def playbook_permissions(req: Request) -> None:
    """The user holds, on the device, the permission of every command the playbook sends."""
    user, device = req.need_user(), req.device
    assert device is not None
    for name in req.details.get("commands", []):
        for permission in REGISTRY[name].permissions:
            authorize(req.plane.policies.policy, user.name, user.grants, permission,
                      device.id, device.tags)


#: Start a playbook run on a device (each step is checked again as a command when it runs).
START_PLAYBOOK = Pipeline("playbook.start", (
    authenticate, load_device, requires(PERM_SESSION), playbook_permissions,
), denied="playbook.denied")


def commands_of(playbook: Playbook) -> list[str]:
    """The command names a playbook's steps send (validated: each is registered)."""
    names = []
    for step in playbook.steps:
        name = split_line(step.line.split("{{", 1)[0] + " x")[0]
        if name not in names:
            names.append(name)
    return names


@dataclass(frozen=True)
class Started:
    """A playbook, parsed, with its text (what is stored and signed)."""

    playbook: Playbook
    text: str

    @property
    def sha256(self) -> str:
        return digest_of(self.text)


def parse_started(text: str, source: str = "playbook") -> Started:
    return Started(load_playbook(text, source), text)


def start_run(plane: ControlPlane, user: User, started: Started, device_id: str,
              given: dict[str, Any], *, rule: str | None = None) -> RunRecord:
    """Check, record, audit and enqueue one run; raise the first denial (audited)."""
    playbook = started.playbook
    inputs = bind_inputs(playbook, given)
    req = Request(plane, target=device_id, user=user, device_id=device_id,
                  details={"playbook": playbook.name, "playbook_sha256": started.sha256,
                           "commands": commands_of(playbook), "rule": rule})

    def admit(checked: Request) -> RunRecord:
        assert checked.device is not None
        store = RunStore(plane.client, plane.keys)
        now = clock.now()
        order = sign_order(plane, RunOrder(
            run_id=new_run_id(), user=user.name, device_id=checked.device.id,
            playbook=playbook.name, playbook_sha256=started.sha256, inputs=inputs, rule=rule,
            issued_at=now, expires_at=now + plane.settings.playbook_order_lifetime_s))
        run = RunRecord(
            run_id=order.run_id, playbook=playbook.name, playbook_sha256=started.sha256,
            device_id=order.device_id, user=user.name, inputs=inputs, status=RunStatus.QUEUED,
            created_at=now, rule=rule, order=order.model_dump(mode="json"),
            steps=[StepRun(id=s.id, name=s.name) for s in playbook.steps])
        store.store_text(started.text, started.sha256)
        store.save(run)
        plane.audit.append(user.name, "playbook.started", order.device_id, "allowed",
                           run=run.run_id, playbook=playbook.name, device=order.device_id,
                           playbook_sha256=started.sha256, inputs_sha256=inputs_digest(inputs),
                           rule=rule)
        plane.celery.send_task(RUN_TASK, args=[order.model_dump(mode="json")],
                               task_id=f"playbook-{run.run_id}",
                               queue=orchestrator_queue(plane.keys.prefix),
                               argsrepr=f"<run {run.run_id}>", kwargsrepr="{}")
        return run

    return START_PLAYBOOK.run(req, admit)
