"""Second-person approval: commands the policy holds in `pending-approval` until decided."""

from __future__ import annotations

from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.records import (
    CommandRecord,
    encode_fields,
    expire_pending,
    load_records,
)
from orchestrator.policies.checks import APPROVE, DENY
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import User
from tasks import clock
from tasks.envelope import CommandStatus, ErrorInfo
from tasks.errors import ApprovalStateError
from tasks.replies import as_text

PENDING = CommandStatus.PENDING_APPROVAL


class Approvals:
    """Approve, deny and list commands waiting for a second person; expire the overdue."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.plane = dispatcher.plane

    def approve(self, user: User, command_id: str) -> CommandRecord:
        """Release a pending command to its device (the caller then waits for its result)."""
        req = Request(self.plane, target=command_id, user=user, command_id=command_id)
        return APPROVE.run(req, self._release)

    def deny(self, user: User, command_id: str, reason: str | None = None) -> CommandRecord:
        """Refuse a pending command for good; it never reaches the device."""
        req = Request(self.plane, target=command_id, user=user, command_id=command_id)
        return DENY.run(req, lambda checked: self._refuse(checked, reason))

    def pending(self) -> list[CommandRecord]:
        """Commands waiting for approval, oldest deadline first (overdue ones expire now)."""
        p = self.plane
        self.expire_overdue()
        ids = [as_text(raw) for raw in p.client.zrange(p.keys.approvals, 0, -1)]
        return [r for r in load_records(p, ids) if r.status is PENDING]

    def expire_overdue(self) -> list[str]:
        """Expire every pending command whose approval window passed; return their ids."""
        p = self.plane
        return [as_text(raw) for raw in p.client.zrangebyscore(p.keys.approvals, "-inf",
                                                               clock.now())
                if expire_pending(p, as_text(raw))]

    def _release(self, req: Request) -> CommandRecord:
        p = self.plane
        user, record, spec, args = req.need_user(), req.record, req.spec, req.args
        assert record is not None and spec is not None and args is not None
        expires_at = clock.now() + p.settings.command_expiry_s
        self._move(user, record, CommandStatus.QUEUED, encode_fields(expires_at=expires_at))
        approved = record.model_copy(update={
            "status": CommandStatus.QUEUED, "decided_by": user.name, "expires_at": expires_at})
        p.audit.append(user.name, "command.approved", record.device_id, "allowed",
                       session=record.session_id or None, device=record.device_id,
                       command_id=record.command_id, command=record.command,
                       requested_by=record.user)
        self.dispatcher.send(approved, spec, args, req.session.cwd if req.session else None)
        return approved

    def _refuse(self, req: Request, reason: str | None) -> CommandRecord:
        user, record = req.need_user(), req.record
        assert record is not None
        why = f"denied by {user.name}" + (f": {reason}" if reason else "")
        error = ErrorInfo(code="denied_by_approver", message=why)
        now = clock.now()
        self._move(user, record, CommandStatus.DENIED,
                   {"error": error.model_dump_json(), **encode_fields(finished_at=now)})
        self.plane.audit.append(user.name, "command.approval_denied", record.device_id, "denied",
                                session=record.session_id or None, device=record.device_id,
                                command_id=record.command_id, command=record.command,
                                requested_by=record.user, reason=reason)
        return record.model_copy(update={"status": CommandStatus.DENIED, "error": error,
                                         "decided_by": user.name, "finished_at": now})

    def _move(self, user: User, record: CommandRecord, to: CommandStatus,
              fields: dict[str, str]) -> None:
        """Move the record out of pending-approval, once: a concurrent decision loses."""
        p = self.plane
        moved, before = p.states.transition(record.command_id, to, [PENDING],
                                            {**fields, **encode_fields(decided_by=user.name)})
        if not moved:
            raise ApprovalStateError(
                f"command {record.command_id} was decided meanwhile (it is "
                f"{before.value if before else 'gone'})")
        p.client.zrem(p.keys.approvals, record.command_id)
