"""Second-person approval: commands the policy holds in `pending-approval` until decided."""

from __future__ import annotations

import json

from orchestrator.devices import Device
from orchestrator.dispatch import Dispatcher
from orchestrator.identity import User
from orchestrator.policies.isolation import check_isolation
from orchestrator.policies.rbac import authorize
from orchestrator.records import CommandRecord, record_from_fields
from tasks import clock
from tasks.commands.base import CommandArgs
from tasks.envelope import CommandStatus, ErrorInfo
from tasks.errors import ApprovalStateError, LiveResponseError, PermissionDeniedError
from tasks.parsing import parse_line
from tasks.registry import REGISTRY, CommandSpec
from tasks.replies import as_text

PENDING = CommandStatus.PENDING_APPROVAL


def command_of(record: CommandRecord) -> tuple[CommandSpec, CommandArgs]:
    """The spec and the arguments (as prepared when requested) of a recorded command."""
    if record.args is None:
        return parse_line(record.line)
    spec = REGISTRY[record.command]
    return spec, spec.args_model.model_validate(record.args)


class Approvals:
    """Approve, deny and list commands waiting for a second person; expire the overdue."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.plane = dispatcher.plane

    def approve(self, user: User, command_id: str) -> CommandRecord:
        """Release a pending command to its device (the caller then waits for its result)."""
        p = self.plane
        try:
            record, spec, args, device = self._decidable(user, command_id)
            check_isolation(device, spec)
            session = None
            if record.session_id:
                session = p.sessions.check_usable(record.session_id, record.user)
        except LiveResponseError as exc:
            self._audit_refusal(user, "approve", command_id, exc)
            raise
        expires_at = clock.now() + p.settings.command_expiry_s
        self._move(user, record, CommandStatus.QUEUED, {"expires_at": json.dumps(expires_at)})
        approved = record.model_copy(update={
            "status": CommandStatus.QUEUED, "decided_by": user.name, "expires_at": expires_at})
        p.audit.append(user.name, "command.approved", record.device_id, "allowed",
                       session=record.session_id or None, device=record.device_id,
                       command_id=command_id, command=record.command, requested_by=record.user)
        self.dispatcher.send(approved, spec, args, session.cwd if session else None)
        return approved

    def deny(self, user: User, command_id: str, reason: str | None = None) -> CommandRecord:
        """Refuse a pending command for good; it never reaches the device."""
        try:
            record = self._decidable(user, command_id)[0]
        except LiveResponseError as exc:
            self._audit_refusal(user, "deny", command_id, exc)
            raise
        why = f"denied by {user.name}" + (f": {reason}" if reason else "")
        error = ErrorInfo(code="denied_by_approver", message=why)
        now = clock.now()
        self._move(user, record, CommandStatus.DENIED,
                   {"error": error.model_dump_json(), "finished_at": json.dumps(now)})
        self.plane.audit.append(user.name, "command.approval_denied", record.device_id, "denied",
                                session=record.session_id or None, device=record.device_id,
                                command_id=command_id, command=record.command,
                                requested_by=record.user, reason=reason)
        return record.model_copy(update={"status": CommandStatus.DENIED, "error": error,
                                         "decided_by": user.name, "finished_at": now})

    def pending(self) -> list[CommandRecord]:
        """Commands waiting for approval, oldest deadline first (overdue ones expire now)."""
        p = self.plane
        self.expire_overdue()
        out = []
        for raw in p.client.zrange(p.keys.approvals, 0, -1):
            fields = p.states.get(as_text(raw))
            if fields.get("state") == PENDING.value:
                out.append(record_from_fields(fields))
        return out

    def expire_overdue(self) -> list[str]:
        """Expire every pending command whose approval window passed; return their ids."""
        p = self.plane
        expired = []
        for raw in p.client.zrangebyscore(p.keys.approvals, "-inf", clock.now()):
            command_id = as_text(raw)
            if self._expire(command_id):
                expired.append(command_id)
            p.client.zrem(p.keys.approvals, command_id)
        return expired

    def _decidable(self, user: User, command_id: str
                   ) -> tuple[CommandRecord, CommandSpec, CommandArgs, Device]:
        """The record, its command and device, if `user` may decide it now; else the reason
        as an error."""
        record = self.dispatcher.get(command_id)
        if record.status is not PENDING:
            raise ApprovalStateError(
                f"command {command_id} is {record.status.value}, not waiting for approval",
                hint="only a command in state pending-approval can be approved or denied")
        if record.approval_expires_at is not None and clock.now() > record.approval_expires_at:
            self._expire(command_id)
            raise ApprovalStateError(
                f"command {command_id} waited longer than its approval window and expired",
                hint="the requester must run it again")
        if record.user == user.name:
            raise PermissionDeniedError(
                f"user {user.name!r} requested command {command_id}: a second person must "
                "decide it", hint="ask another user with the right role to approve it")
        spec, args = command_of(record)
        device = self.plane.devices.get(record.device_id)
        for permission in spec.permissions_for(args):
            authorize(self.plane.policies.policy, user.name, user.grants, permission,
                      device.id, device.tags)
        return record, spec, args, device

    def _move(self, user: User, record: CommandRecord, to: CommandStatus,
              fields: dict[str, str]) -> None:
        """Move the record out of pending-approval, once: a concurrent decision loses."""
        p = self.plane
        moved, before = p.states.transition(record.command_id, to, [PENDING],
                                            {**fields, "decided_by": json.dumps(user.name)})
        if not moved:
            raise ApprovalStateError(
                f"command {record.command_id} was decided meanwhile (it is "
                f"{before.value if before else 'gone'})")
        p.client.zrem(p.keys.approvals, record.command_id)

    def _expire(self, command_id: str) -> bool:
        p = self.plane
        moved, _ = p.states.transition(command_id, CommandStatus.EXPIRED, [PENDING],
                                       {"finished_at": json.dumps(clock.now())})
        p.client.zrem(p.keys.approvals, command_id)
        if moved:
            record = self.dispatcher.get(command_id)
            p.audit.append("orchestrator", "command.expired", record.device_id, "expired",
                           session=record.session_id or None, device=record.device_id,
                           command_id=command_id, command=record.command,
                           requested_by=record.user, reason="approval window passed")
        return moved

    def _audit_refusal(self, user: User, verb: str, command_id: str,
                       exc: LiveResponseError) -> None:
        self.plane.audit.append(user.name, f"approval.{verb}_refused", command_id, "denied",
                                command_id=command_id, reason=exc.code, message=exc.message)
