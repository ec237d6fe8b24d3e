"""The dispatch pipeline: check, audit, enqueue by name to the device's queue, wait, record."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from orchestrator.audit.log import digest
from orchestrator.commands.records import (
    CommandRecord,
    claim_outcome,
    device_of,
    load_record,
    stage_record,
    typed_result,
)
from orchestrator.commands.table import COMMAND_TABLE
from orchestrator.files.transfer import merge_receipt, receive_file
from orchestrator.fleet.publish import TaskMessages, stage_publish
from orchestrator.plane import ControlPlane
from orchestrator.policies.checks import COMMAND, DEVICE_COMMAND
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import User
from tasks import clock
from tasks.cancel import CANCEL_CONTROL, cancel_order
from tasks.commands.base import CommandArgs
from tasks.durations import format_duration
from tasks.envelope import CommandEnvelope, CommandOutcome, CommandStatus, ErrorInfo
from tasks.errors import InvalidResultError, LiveResponseError
from tasks.queues import queue_for
from tasks.registry import REGISTRY, CommandSpec
from tasks.replies import as_text

log = logging.getLogger(__name__)

#: Extra seconds to wait for an agent's answer past a command's own limits.
WAIT_GRACE_S = 5.0
#: How long one wait for a result lasts before the command's state is looked at again.
WAIT_SLICE_S = 0.5


def new_command_id() -> str:
    """A fresh command id (also the Celery task id)."""
    return uuid.uuid4().hex


class Dispatcher:
    """Turns analyst command lines into audited, addressed, time-bounded Celery tasks."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def submit(self, user: User, session_id: str, line: str, *,
               expires_s: float | None = None, command_id: str | None = None) -> CommandRecord:
        """Run the command pipeline for a line in a session, then enqueue the command or hold
        it for approval; raise the first denial (the runner audits it).

        `expires_s`: how long it may wait for its agent (default `command_expiry_s`, at most
        `command_expiry_max_s`). `command_id`: a caller that must never issue a command twice
        (a resumed playbook step) names it; an id already recorded is refused.
        """
        req = Request(self.plane, target=session_id, user=user, session_id=session_id,
                      line=line, command_id=command_id or new_command_id(),
                      expires_s=expires_s, caller_command_id=command_id is not None)
        return COMMAND.run(req, self._admit)

    def submit_token(self, token: str | None, session_id: str, line: str, *,
                     expires_s: float | None = None) -> CommandRecord:
        """The same for an HTTP request: the pipeline's first check authenticates `token`
        (its token, user, session and device then read in one round trip, state.reads)."""
        req = Request(self.plane, target=session_id, token=token, session_id=session_id,
                      line=line, command_id=new_command_id(), expires_s=expires_s)
        return COMMAND.run(req, self._admit)

    def submit_device(self, user: User, device_id: str, line: str, *,
                      expires_s: float | None = None) -> CommandRecord:
        """The same for a device-level command (containment), which needs no session."""
        req = Request(self.plane, target=device_id, user=user, device_id=device_id,
                      line=line, command_id=new_command_id(), expires_s=expires_s)
        return DEVICE_COMMAND.run(req, self._admit)

    def _admit(self, req: Request) -> CommandRecord:
        """Record and audit an allowed command; enqueue it, or hold it for a second person."""
        p = self.plane
        user, spec, args, device = req.need_user(), req.spec, req.args, req.device
        assert spec is not None and args is not None and device is not None
        assert req.command_id is not None and req.line is not None
        command_id, line, rule, session = req.command_id, req.line, req.rule, req.session
        now = clock.now()
        session_id = session.id if session else ""
        pending = rule is not None
        record = CommandRecord(
            command_id=command_id, session_id=session_id, device_id=device.id, user=user.name,
            command=spec.name, line=line, args=args.model_dump(mode="json"), created_at=now,
            status=CommandStatus.PENDING_APPROVAL if pending else CommandStatus.QUEUED,
            expires_at=None if pending else now + req.expiry_s(p.settings),
            approval_expires_at=now + rule.timeout_s if rule else None,
        )
        # One round trip for the record, the session's activity and the "requested" entry.
        pipe = p.client.pipeline(transaction=False)
        stage_record(pipe, p, record)
        if record.approval_expires_at is not None:
            pipe.zadd(p.keys.approvals, {command_id: record.approval_expires_at})
        finish_active = None
        if session is not None:
            pipe.rpush(p.keys.session_commands(session.id), command_id)
            finish_active = p.sessions.stage_active(pipe, session)
        finish_audit = p.audit.stage(
            pipe, user.name, "command.requested", device.id,
            "pending-approval" if pending else "allowed",
            session=session_id or None, device=device.id, command_id=command_id,
            command=spec.name, line=line,
            approval_expires_at=record.approval_expires_at)
        audit_at = len(pipe) - 1
        if not pending:  # after the record and its entry: the agent finds both
            self.stage_send(pipe, record, spec, args, session.cwd if session else None)
        replies = pipe.execute()
        finish_audit(replies[audit_at])
        if finish_active is not None:
            try:
                finish_active(replies[audit_at - 1])
            except LiveResponseError:  # the session closed between check and write
                # Denied before any agent could start it: an agent drops a command that is
                # no longer queued, so the message already sent never runs.
                p.states.transition(command_id, CommandStatus.DENIED,
                                    [CommandStatus.QUEUED, CommandStatus.PENDING_APPROVAL])
                p.client.zrem(p.keys.approvals, command_id)
                raise
        return record

    def envelope(self, record: CommandRecord, spec: CommandSpec, args: CommandArgs,
                 cwd: str | None) -> CommandEnvelope:
        """The command's envelope, signed with the orchestrator's key."""
        assert record.expires_at is not None
        return self.plane.signer.sign(CommandEnvelope(
            command_id=record.command_id, device_id=record.device_id,
            session_id=record.session_id, user=record.user, command=spec.name,
            args=args.model_dump(mode="json"), cwd=cwd,
            issued_at=clock.now(), expires_at=record.expires_at,
        ))

    def send(self, record: CommandRecord, spec: CommandSpec, args: CommandArgs,
             cwd: str | None) -> None:
        """Sign the command's envelope and send it by name to its device's own queue."""
        pipe = self.plane.client.pipeline(transaction=False)
        self.stage_send(pipe, record, spec, args, cwd)
        pipe.execute()

    def stage_send(self, pipe: Any, record: CommandRecord, spec: CommandSpec, args: CommandArgs,
                   cwd: str | None) -> None:
        """Queue the signed task message on `pipe`, as `send_task` would publish it.

        Built with Celery's own task-message builder and pushed where kombu's Redis transport
        puts it (`fleet.publish`), so it travels with the record and its audit entry: one
        round trip, and no queue or binding declared by the orchestrator (the agent's worker
        declares its own). Whoever waits subscribes to the result then (`wait`).
        """
        assert record.expires_at is not None
        envelope = self.envelope(record, spec, args, cwd)
        queue = queue_for(record.device_id)
        messages = TaskMessages(self.plane.celery, spec.task_name,
                                max(record.expires_at - clock.now(), 1.0))
        # Flower shows argsrepr: name the command, never its arguments.
        stage_publish(pipe, queue, messages.message(
            record.command_id, [envelope.model_dump(mode="json")], queue,
            argsrepr=f"<{spec.name} {record.command_id}>"))

    def wait(self, record: CommandRecord) -> CommandRecord:
        """Block until the command ends (completed, failed, expired...) and record the outcome.

        Waits in short slices so a command cancelled meanwhile (its session closed) answers at
        once; an unstarted command expires at its deadline, a started one gets its time limit.
        """
        result = AsyncResult(record.command_id, app=self.plane.celery)
        try:
            return self._wait(record, result)
        finally:
            # Listen for it no longer: a command that ended without the agent's answer
            # (cancelled, expired, silent) would stay subscribed until garbage collected.
            self.plane.celery.backend.remove_pending_result(result)

    def _wait(self, record: CommandRecord, result: AsyncResult) -> CommandRecord:
        p = self.plane
        receipt = receive_file(p, record)  # a file the command sends is received first
        deadline = (record.expires_at or clock.now()) + 1.0
        while True:
            outcome = self._get(result, max(min(WAIT_SLICE_S, deadline - clock.now()), 0.05))
            if outcome is not None:
                if (outcome.status is not CommandStatus.COMPLETED and p.states.state(
                        record.command_id) is CommandStatus.CANCELLED):
                    outcome = error_outcome(
                        record, CommandStatus.CANCELLED, "cancelled",
                        "the command was cancelled while it ran; the agent stopped it")
                return self.finish(record, merge_receipt(outcome, receipt))
            fields = p.states.get(record.command_id)
            state = CommandStatus(fields["state"]) if fields.get("state") else None
            if state is CommandStatus.RUNNING:
                # Once it started, its expiry (how long it could wait for its agent, days
                # for an offline device) no longer counts: its time limit does.
                started = float(fields.get("started_at") or clock.now())
                limit = REGISTRY[record.command].time_limit(p.settings.command_time_limit_s)
                deadline = started + limit + 2 * WAIT_GRACE_S
            elif state is not None and state.final:
                # The agent records the end in Redis a moment before its outcome reaches the
                # result backend: give its own answer that moment, as the reaper does.
                late = None if state is CommandStatus.CANCELLED else self._get(result,
                                                                               WAIT_GRACE_S)
                if late is not None:
                    return self.finish(record, merge_receipt(late, receipt))
                return self.finish(record, error_outcome(
                    record, state, state.value,
                    f"the command was {state.value} before the agent finished it"))
            if clock.now() < deadline:
                continue
            if state is CommandStatus.QUEUED:
                moved, _ = p.states.transition(record.command_id, CommandStatus.EXPIRED,
                                               [CommandStatus.QUEUED],
                                               {"finished_at": repr(clock.now())})
                if moved:  # the agent drops it as expired; no (unsigned) revoke is sent
                    return self.finish(record, error_outcome(
                        record, CommandStatus.EXPIRED, "expired",
                        f"no agent started the command within {waited_for(record)}; "
                        f"device {record.device_id!r} may be offline",
                        "check 'lr devices' and that lr-agent runs on the endpoint"))
                continue  # it started just now: the next slice sees it running
            p.states.transition(record.command_id, CommandStatus.FAILED,
                                [CommandStatus.RUNNING])
            return self.finish(record, error_outcome(
                record, CommandStatus.FAILED, "agent_silent",
                "the agent started the command but never answered",
                "see the agent's log on the endpoint"))

    def cancel_pending(self, user: User, session_id: str, reason: str) -> list[str]:
        """Cancel every unfinished command of the session (queued, held for approval, or
        running: the agent stops those); return their ids."""
        p = self.plane
        cancelled = []
        for raw_id in p.client.lrange(p.keys.session_commands(session_id), 0, -1):
            command_id = as_text(raw_id)
            if self.cancel(user, command_id, session_id, reason):
                cancelled.append(command_id)
        return cancelled

    def cancel(self, user: User, command_id: str, session_id: str, reason: str) -> bool:
        """Cancel one unfinished command; a running one is stopped on its agent (its thread
        told to stop and the processes it started killed; with the prefork pool, SIGTERM to
        the pool process running it). False when it had already ended."""
        p = self.plane
        moved, before = p.states.transition(
            command_id, CommandStatus.CANCELLED,
            [CommandStatus.QUEUED, CommandStatus.PENDING_APPROVAL, CommandStatus.RUNNING],
            {"finished_at": repr(clock.now())})
        if not moved:
            return False
        p.client.zrem(p.keys.approvals, command_id)
        running = before is CommandStatus.RUNNING
        device_id = device_of(p, command_id)
        nodes = self._agent_nodes(str(device_id))
        if running and nodes:
            # Agents obey no unsigned remote control: the stop is an order signed like a command.
            order = p.signer.sign(cancel_order(command_id, str(device_id), clock.now()))
            p.celery.control.broadcast(CANCEL_CONTROL, destination=nodes,
                                       arguments={"order": order.model_dump(mode="json")})
        p.audit.append(user.name, "command.cancelled", session_id or command_id, "cancelled",
                       session=session_id or None, command_id=command_id, reason=reason,
                       was=before.value if before else None)
        return True

    def _agent_nodes(self, device_id: str) -> list[str] | None:
        """The Celery node name of the device's agent, so a signed cancel reaches only it."""
        if not device_id:
            return None
        host = self.plane.client.hget(self.plane.keys.device(device_id), "hostname")
        return [f"lr-agent-{device_id}@{as_text(host)}"] if host else None

    def run(self, user: User, session_id: str, line: str) -> CommandRecord:
        """Submit and wait."""
        return self.wait(self.submit(user, session_id, line))

    def get(self, command_id: str) -> CommandRecord:
        """A command's stored record (CommandNotFoundError when unknown)."""
        return load_record(self.plane, command_id)

    def _get(self, result: AsyncResult, timeout_s: float) -> CommandOutcome | None:
        try:
            value = result.get(timeout=timeout_s, propagate=False, disable_sync_subtasks=False)
        except CeleryTimeout:
            return None
        return outcome_of(result.id, value)

    def finish(self, record: CommandRecord, outcome: CommandOutcome) -> CommandRecord:
        """Record and audit the command's outcome; run its after-effect if it completed.

        Whoever claims the outcome first records it (a waiter, a background job, the reaper
        of any orchestrator process): the others get the record as it stands.
        """
        p = self.plane
        if not claim_outcome(p, record.command_id):
            return load_record(p, record.command_id)
        done = record.model_copy(update={
            "status": outcome.status, "result": outcome.result, "error": outcome.error,
            "truncated": outcome.truncated, "started_at": outcome.started_at,
            "finished_at": outcome.finished_at or clock.now(), "outcome_recorded": True,
        })
        pipe = p.client.pipeline(transaction=False)
        stage_record(pipe, p, done)
        finish_audit = p.audit.stage(
            pipe, done.user, f"command.{done.status.value}", done.device_id,
            done.status.value, session=done.session_id or None, device=done.device_id,
            command_id=done.command_id, command=done.command, batch=done.batch_id,
            result_digest=digest(json.dumps(done.result, sort_keys=True)),
            error=done.error.code if done.error else None,
        )
        finish_audit(pipe.execute()[-1])
        if done.status is CommandStatus.COMPLETED and done.result is not None:
            self._apply_effects(done)
        return done

    def _apply_effects(self, done: CommandRecord) -> None:
        """What the orchestrator records once a command succeeded (cwd, isolation state): its
        command table entry's after-effect, given the typed result. A result that does not fit
        its model changes nothing; the API answers the record with `invalid_result`."""
        after = COMMAND_TABLE[done.command].after
        if after is None:
            return
        try:
            result = typed_result(done)
        except InvalidResultError as exc:
            log.error("command %s (%s) completed, nothing recorded of it: %s",
                      done.command_id, done.command, exc.message)
            return
        if result is not None:
            after(self.plane, done, result)


def outcome_of(command_id: str, value: object) -> CommandOutcome:
    """The agent's outcome from the task's return value in the result backend."""
    if isinstance(value, dict):
        return CommandOutcome.model_validate(value)
    # The task itself raised (e.g. killed at the hard time limit): report, never hang.
    return CommandOutcome(
        command_id=command_id, device_id="", command="", status=CommandStatus.FAILED,
        error=ErrorInfo(code="agent_error", message=f"the agent task failed: {value!r}"),
    )


def waited_for(record: CommandRecord) -> str:
    """How long the record's command could wait for its agent, as `90s`, `2h`, `7d`."""
    return format_duration(round((record.expires_at or record.created_at) - record.created_at))


def error_outcome(record: CommandRecord, status: CommandStatus, code: str, message: str,
                   hint: str | None = None) -> CommandOutcome:
    return CommandOutcome(command_id=record.command_id, device_id=record.device_id,
                          command=record.command, status=status,
                          error=ErrorInfo(code=code, message=message, hint=hint),
                          finished_at=clock.now())
