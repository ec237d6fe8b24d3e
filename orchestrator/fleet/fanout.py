"""Fan-out: one command line to every device a selector names, as one batch.

What holds for all devices (the user, the line, the expiry, library files) is checked once
(`FLEET`); each device then goes through its own checks (`FLEET_DEVICE`: the right to act
there, scopes included, isolation, approval rule). A device refused is audited and reported
`denied`; the others are recorded, audited (`command.requested`, one entry each) and sent in
a single Redis round trip with the batch itself, each in an envelope signed for its device.
"""

from __future__ import annotations

import uuid

from orchestrator.commands.dispatch import Dispatcher, new_command_id
from orchestrator.commands.records import CommandRecord, stage_record, stage_records_alike
from orchestrator.fleet.batches import DENIED, Batch, BatchEntry, stage_batch
from orchestrator.fleet.publish import TaskMessages, stage_publish
from orchestrator.fleet.selector import resolve
from orchestrator.plane import ControlPlane
from orchestrator.policies.checks import FLEET, FLEET_DEVICE
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import User
from tasks import clock
from tasks.envelope import CommandStatus, ErrorInfo
from tasks.errors import LiveResponseError
from tasks.queues import queue_for


def new_batch_id() -> str:
    """A fresh batch id (short enough to type)."""
    return uuid.uuid4().hex[:12]


class FleetDispatcher:
    """Sends one line to many devices as a batch, every device checked and audited."""

    def __init__(self, plane: ControlPlane, dispatcher: Dispatcher | None = None) -> None:
        self.plane = plane
        self.dispatcher = dispatcher or Dispatcher(plane)

    def submit(self, user: User, selector: str, line: str, *,
               expires_s: float | None = None) -> Batch:
        """Check, record, audit and send; the new batch (denied devices included)."""
        batch_id = new_batch_id()
        req = Request(self.plane, target=f"batch:{batch_id}", user=user, line=line,
                      expires_s=expires_s, details={"batch": batch_id, "selector": selector})
        return FLEET.run(req, lambda checked: self._fan_out(checked, batch_id, selector))

    def _fan_out(self, req: Request, batch_id: str, selector: str) -> Batch:
        p = self.plane
        user, spec, args, line = req.need_user(), req.spec, req.args, req.line
        assert spec is not None and args is not None and line is not None
        devices = resolve(p.devices, selector)
        expiry_s = req.expiry_s(p.settings)
        now = clock.now()
        admitted: list[Request] = []
        denied: dict[str, ErrorInfo] = {}
        for device in devices:
            one = Request(p, target=device.id, user=user, device_id=device.id, device=device,
                          line=line, spec=spec, args=args, command_id=new_command_id(),
                          expires_s=req.expires_s, details={"batch": batch_id})
            try:
                admitted.append(FLEET_DEVICE.check(one))
            except LiveResponseError as exc:  # audited by the pipeline; the rest still run
                denied[device.id] = ErrorInfo(code=exc.code, message=exc.message, hint=exc.hint)
        held = [one for one in admitted if one.rule is not None]
        queued = [one for one in admitted if one.rule is None]
        records = [self._record(one, batch_id, now, expiry_s) for one in queued]
        held_records = [self._record(one, batch_id, now, expiry_s) for one in held]
        batch = Batch(id=batch_id, user=user.name, line=line, command=spec.name,
                      selector=selector, created_at=now, expires_at=now + expiry_s,
                      total=len(devices))
        pipe = p.client.pipeline(transaction=False)
        # Records differ only in their ids (held ones also in their approval window).
        stage_records_alike(pipe, p, records)
        for record in held_records:
            stage_record(pipe, p, record)
            assert record.approval_expires_at is not None
            pipe.zadd(p.keys.approvals, {record.command_id: record.approval_expires_at})
        records += held_records
        stage_batch(pipe, p, batch, [(r.device_id, r.command_id) for r in records], denied)
        first_entry = len(pipe)
        finish_audit = p.audit.stage_many(pipe, [
            (user.name, "batch.created", f"batch:{batch_id}", "allowed",
             {"batch": batch_id, "selector": selector, "line": line, "command": spec.name,
              "devices": len(devices), "denied": len(denied), "expires_s": expiry_s}),
            *((user.name, "command.requested", r.device_id,
               "pending-approval" if r.status is CommandStatus.PENDING_APPROVAL else "allowed",
               {"device": r.device_id, "command_id": r.command_id, "command": spec.name,
                "line": line, "batch": batch_id, "approval_expires_at": r.approval_expires_at})
              for r in records),
        ])
        after_entries = len(pipe)
        messages = TaskMessages(p.celery, spec.task_name, max(now + expiry_s - clock.now(), 1.0))
        for record in records:
            if record.status is CommandStatus.QUEUED:
                envelope = self.dispatcher.envelope(record, spec, args, None)
                queue = queue_for(record.device_id)
                stage_publish(pipe, queue, messages.message(
                    record.command_id, [envelope.model_dump(mode="json")], queue,
                    argsrepr=f"<{spec.name} {record.command_id}>"))
        replies = pipe.execute()
        finish_audit(replies[first_entry:after_entries])
        batch.entries = [BatchEntry(device=r.device_id, status=r.status.value,
                                    command_id=r.command_id, command=spec.name)
                         for r in records]
        batch.entries += [BatchEntry(device=d, status=DENIED, error=e, recorded=True)
                          for d, e in denied.items()]
        batch.counts = {}
        for entry in batch.entries:
            batch.counts[entry.status] = batch.counts.get(entry.status, 0) + 1
        batch.finished = not records
        return batch

    def _record(self, req: Request, batch_id: str, now: float, expiry_s: float) -> CommandRecord:
        user, spec, args, device, rule = req.need_user(), req.spec, req.args, req.device, req.rule
        assert spec is not None and args is not None and device is not None
        assert req.command_id is not None and req.line is not None
        return CommandRecord(
            command_id=req.command_id, session_id="", device_id=device.id, user=user.name,
            command=spec.name, line=req.line, args=args.model_dump(mode="json"),
            created_at=now, batch_id=batch_id,
            status=CommandStatus.PENDING_APPROVAL if rule else CommandStatus.QUEUED,
            expires_at=None if rule else now + expiry_s,
            approval_expires_at=now + rule.timeout_s if rule else None,
        )
