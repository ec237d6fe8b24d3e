"""Executing one playbook run on the orchestrator worker, step by step, resumable.

Every step is a command through the command pipeline, in a session the run opens on its device
as the user of its signed order. Each command's id is derived from (run, step, item): a run
resumed after its worker died finds what it already started and waits on it instead of
sending it again. A step the approval rule holds pauses the run until a second person decides.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.records import CommandRecord, expire_pending, load_record
from orchestrator.plane import ControlPlane
from orchestrator.playbooks.expressions import evaluate, truthy
from orchestrator.playbooks.model import Playbook, Step, load_playbook, parse_condition
from orchestrator.playbooks.orders import RunOrder
from orchestrator.playbooks.render import parse_template, render_line
from orchestrator.playbooks.runs import (
    RunRecord,
    RunStatus,
    RunStore,
    StepCommand,
    StepRun,
    step_command_id,
)
from orchestrator.playbooks.sent import SentSteps
from orchestrator.playbooks.summary import summarize
from orchestrator.policies.checks import CLOSE_SESSION, OPEN_SESSION
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import User, get_user
from tasks import clock
from tasks.envelope import CommandStatus
from tasks.errors import CommandNotFoundError, LiveResponseError, SignatureError
from tasks.registry import REGISTRY

log = logging.getLogger(__name__)

#: Actor of the worker's own audit entries (refused orders).
WORKER_ACTOR = "orchestrator-worker"
#: Seconds between looks at a command held for approval (or decided and run elsewhere).
POLL_S = 0.25
#: Seconds a final state may wait for whoever waits on it to record its outcome.
OUTCOME_GRACE_S = 5.0
#: Final states that carry no outcome from an agent.
UNSENT = (CommandStatus.DENIED, CommandStatus.EXPIRED, CommandStatus.CANCELLED)


class PlaybookTamperedError(SignatureError):
    """Raised when the stored playbook text is not the one the order's digest signs."""

    def __init__(self, message: str) -> None:
        super().__init__("playbook_tampered", message)


class StepResentError(LiveResponseError):
    """Raised when a step's command was sent before but its record vanished from Redis."""

    code = "step_already_sent"
    http_status = 409


def load_ordered_playbook(plane: ControlPlane, order: RunOrder) -> Playbook:
    """The playbook the order names, once its stored text has the signed sha256."""
    from orchestrator.playbooks.model import digest_of

    text = RunStore(plane.client, plane.keys).text(order.playbook_sha256)
    if text is None or digest_of(text) != order.playbook_sha256:
        raise PlaybookTamperedError(f"the stored text of playbook {order.playbook!r} is missing "
                                    f"or is not the one run {order.run_id} was ordered with")
    return load_playbook(text, order.playbook)


class RunEngine:
    """Runs the steps of one verified order and keeps its record up to date."""

    def __init__(self, plane: ControlPlane, order: RunOrder, playbook: Playbook,
                 sent: SentSteps) -> None:
        self.plane = plane
        self.sent = sent
        self.order = order
        self.playbook = playbook
        self.store = RunStore(plane.client, plane.keys)
        self.dispatcher = Dispatcher(plane)
        self.run = self._record()

    def _record(self) -> RunRecord:
        """The run's record, with what the signed order says put back over what Redis says."""
        o = self.order
        found = self.store.find(o.run_id)
        steps = {s.id: s for s in (found.steps if found else [])}
        base = found or RunRecord(
            run_id=o.run_id, playbook=o.playbook, playbook_sha256=o.playbook_sha256,
            device_id=o.device_id, user=o.user, inputs=o.inputs, status=RunStatus.QUEUED,
            created_at=o.issued_at, rule=o.rule, order=o.model_dump(mode="json"), steps=[])
        return base.model_copy(update={
            "playbook": o.playbook, "playbook_sha256": o.playbook_sha256,
            "device_id": o.device_id, "user": o.user, "inputs": o.inputs, "rule": o.rule,
            "order": o.model_dump(mode="json"),
            "steps": [StepRun(id=s.id, name=s.name, status=steps[s.id].status)
                      if s.id in steps else StepRun(id=s.id, name=s.name)
                      for s in self.playbook.steps]})

    def save(self) -> None:
        self.store.save(self.run)

    def execute(self) -> RunRecord:
        """Run (or resume) every step; close the session; record and audit the outcome."""
        if self.run.status.final:
            return self.run
        resumed = self.run.started_at is not None
        self.run.status = RunStatus.RUNNING
        self.run.started_at = self.run.started_at or clock.now()
        self.save()
        if resumed:
            self.plane.audit.append(WORKER_ACTOR, "playbook.resumed", self.order.device_id,
                                    "allowed", run=self.order.run_id, device=self.order.device_id,
                                    playbook=self.order.playbook)
        try:
            user = get_user(self.plane.client, self.plane.keys, self.order.user)
            session_id = self._session(user)
            try:
                failed = self._steps(user, session_id)
            finally:
                self._close(user, session_id)
        except LiveResponseError as exc:
            failed = exc.message
        self.run.status = RunStatus.FAILED if failed else RunStatus.COMPLETED
        self.run.error = failed or None
        self.run.finished_at = clock.now()
        self.save()
        self.plane.audit.append(self.order.user, "playbook.finished", self.order.device_id,
                                self.run.status.value, run=self.order.run_id,
                                device=self.order.device_id, playbook=self.order.playbook,
                                error=self.run.error)
        return self.run

    def _session(self, user: User) -> str:
        """The run's session: the one it opened before, if still usable, else a new one."""
        p = self.plane
        if self.run.session_id:
            try:
                return p.sessions.check_usable(self.run.session_id, user.name).id
            except LiveResponseError:
                pass

        def open_it(checked: Request) -> str:
            assert checked.device is not None
            session = p.sessions.open(user.name, checked.device.id)
            p.audit.append(user.name, "session.opened", session.device_id, "allowed",
                           session=session.id, device=session.device_id, run=self.order.run_id)
            return session.id

        req = Request(p, target=self.order.device_id, user=user, device_id=self.order.device_id,
                      details={"run": self.order.run_id})
        self.run.session_id = OPEN_SESSION.run(req, open_it)
        self.save()
        return self.run.session_id

    def _close(self, user: User, session_id: str) -> None:
        p = self.plane

        def close_it(checked: Request) -> None:
            closed = p.sessions.close(session_id)
            p.audit.append(user.name, "session.closed", closed.device_id, "allowed",
                           session=session_id, device=closed.device_id, run=self.order.run_id)

        try:
            CLOSE_SESSION.run(Request(p, target=session_id, user=user, session_id=session_id),
                              close_it)
        except LiveResponseError as exc:  # already closed or expired: nothing left to do
            log.info("run %s: session %s not closed: %s", self.order.run_id, session_id,
                     exc.message)

    def _steps(self, user: User, session_id: str) -> str:
        """Run each step in order; the reason the run failed, or '' when it did not."""
        context: dict[str, Any] = {"inputs": self.order.inputs, "steps": {}}
        for n, step in enumerate(self.playbook.steps):
            state = self.run.steps[n]
            outcome = self._step(user, session_id, step, state, context)
            context["steps"][step.id] = outcome
            self.save()
            if state.status == "failed" and step.on_error == "stop":
                for later in self.run.steps[n + 1:]:
                    later.status = "not-run"
                return f"step {step.id!r} failed: {state.reason or outcome.get('error')}"
        return ""

    def _step(self, user: User, session_id: str, step: Step, state: StepRun,
              context: dict[str, Any]) -> dict[str, Any]:
        """One step's commands; what later steps see of it (status, result, error, ids)."""
        items: list[Any] | None = None
        if step.for_each is not None:
            found = evaluate(parse_condition(step.for_each), context)
            items = found if isinstance(found, list) else []
        if step.when is not None:
            scope = context if items is None else {**context, "item": None}
            if items is None and not truthy(evaluate(parse_condition(step.when), scope)):
                return self._skip(step, state, "its condition (when) is false")
        if items is not None:
            if step.when is not None:
                node = parse_condition(step.when)
                items = [i for i in items if truthy(evaluate(node, {**context, "item": i}))]
            if not items:
                return self._skip(step, state, "nothing to do: no item")
        template = parse_template(step.line)
        state.status = "running"
        state.commands = []
        results: list[Any] = []
        worst: CommandRecord | None = None
        for index, item in enumerate(items if items is not None else [None]):
            scope = context if items is None else {**context, "item": item}
            command_id = step_command_id(self.order.run_id, step.id,
                                         index if items is not None else None)
            try:
                line = render_line(template, scope)
                record = self._command(user, session_id, line, command_id, state)
            except LiveResponseError as exc:
                state.status, state.reason = "failed", exc.message
                return {"status": "failed", "result": None, "error": exc.message,
                        "command_id": command_id}
            results.append(record.result)
            if record.status is not CommandStatus.COMPLETED and worst is None:
                worst = record
        state.status = "completed" if worst is None else "failed"
        if worst is not None:
            state.reason = _error_text(worst)
        ids = [c.command_id for c in state.commands]
        return {"status": state.status, "result": results if items is not None else results[0],
                "error": state.reason, "command_id": ids if items is not None else ids[0]}

    def _skip(self, step: Step, state: StepRun, why: str) -> dict[str, Any]:
        if state.status != "skipped":
            self.plane.audit.append(self.order.user, "playbook.step_skipped",
                                    self.order.device_id, "skipped", run=self.order.run_id,
                                    device=self.order.device_id, step=step.id, reason=why)
        state.status, state.reason = "skipped", why
        return {"status": "skipped", "result": None, "error": None, "command_id": None}

    def _command(self, user: User, session_id: str, line: str, command_id: str,
                 state: StepRun) -> CommandRecord:
        """The step's command: the one already started under this id, or a new submission;
        waited for until it has an outcome."""
        entry = StepCommand(line=line, command_id=command_id, status="queued")
        state.commands.append(entry)
        try:
            record = load_record(self.plane, command_id)
        except CommandNotFoundError:
            if not self.sent.claim(command_id, self.order.run_id):
                raise StepResentError(
                    f"the command of this step ({command_id}) was sent before and its record "
                    "is gone from Redis: it is not sent again",
                    hint="see `lr audit show --command ID`; Redis may have been tampered with"
                ) from None
            record = self.dispatcher.submit(user, session_id, line, command_id=command_id)
        self.save()
        record = self._outcome(record, state, entry)
        entry.status, entry.summary = record.status.value, summarize(record)
        entry.error = _error_text(record) if record.status is not CommandStatus.COMPLETED else None
        return record

    def _outcome(self, record: CommandRecord, state: StepRun,
                 entry: StepCommand) -> CommandRecord:
        """Wait for the command's outcome; while it is held for approval the run says so."""
        final_since: float | None = None
        while True:
            status = record.status
            if status is CommandStatus.PENDING_APPROVAL:
                if entry.status != status.value:
                    entry.status = state.status = status.value
                    self.run.status = RunStatus.WAITING_APPROVAL
                    self.save()
                if record.approval_expires_at is not None and (
                        clock.now() > record.approval_expires_at):
                    expire_pending(self.plane, record.command_id)
            elif status in UNSENT or (status.final and (record.result or record.error)):
                break
            elif status.final:
                # The agent finished; whoever waited on it (the approver's request) records
                # the outcome. If nobody does within the grace, collect it here.
                final_since = final_since or time.monotonic()
                if time.monotonic() - final_since > OUTCOME_GRACE_S:
                    return self.dispatcher.wait(record)
            elif record.decided_by is None:
                return self._waited(record, state)
            elif clock.now() > _overdue_at(self.plane, record):
                return self._waited(record, state)  # approved, and nobody else waits for it
            time.sleep(POLL_S)
            record = load_record(self.plane, record.command_id)
        return record

    def _waited(self, record: CommandRecord, state: StepRun) -> CommandRecord:
        if self.run.status is not RunStatus.RUNNING:
            self.run.status = RunStatus.RUNNING
        state.status = "running"
        self.save()
        return self.dispatcher.wait(record)


def _overdue_at(plane: ControlPlane, record: CommandRecord) -> float:
    """When an approved command should long have ended, if someone were collecting it."""
    limit = REGISTRY[record.command].time_limit(plane.settings.command_time_limit_s)
    return (record.expires_at or clock.now()) + limit + 2 * OUTCOME_GRACE_S


def _error_text(record: CommandRecord) -> str:
    if record.error is not None:
        return f"{record.status.value}: {record.error.code}: {record.error.message}"
    return record.status.value
