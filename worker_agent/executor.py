"""The one executor: every command passes the same checks before and after its handler runs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil
import redis
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError

from config.settings import Settings
from tasks import clock
from tasks.commands.base import CommandArgs, CommandResult
from tasks.envelope import CommandEnvelope, CommandOutcome, CommandStatus, ErrorInfo
from tasks.errors import (
    CommandFailedError,
    CommandTimeoutError,
    LedgerError,
    LiveResponseError,
    SignatureError,
)
from tasks.keys import Keys
from tasks.registry import CommandSpec, Registry
from tasks.signing import Verifier
from tasks.state import CommandStateStore
from worker_agent.context import BrokerEndpoint, CommandContext
from worker_agent.ledger import Ledger
from worker_agent.limits import truncate_result
from worker_agent.refusals import AgentAudit, clip

log = logging.getLogger(__name__)

Handler = Callable[[CommandArgs, CommandContext], CommandResult]

#: Why a task must not run: the status it ends in, a stable reason code, a message.
Refusal = tuple[CommandStatus, str, str]
#: How long the agent keeps trying to record a command's end in Redis while Redis is away
#: (a restart, a failover). The outcome itself is retried by Celery (result_backend_always_retry).
END_RETRY_S = 60.0
#: Longest pause between two of those tries.
END_RETRY_PAUSE_MAX_S = 2.0
#: The refusal of a command id that already started once (a second delivery, a replay).
REPLAYED = "replayed"


def is_replay_refusal(outcome: dict[str, object]) -> bool:
    """True when `outcome` refuses a second delivery of a command that already started."""
    error = outcome.get("error")
    return isinstance(error, dict) and error.get("code") == REPLAYED


@dataclass
class Executor:
    """Runs envelopes for one device: check, mark started once, run, pack the outcome."""

    device_id: str
    client: redis.Redis
    keys: Keys
    registry: Registry
    #: Command name → handler (a HandlerTable on a running agent: imported on first use).
    handlers: Mapping[str, Handler]
    output_max_bytes: int
    #: The agent's main process pid, fixed when the agent starts.
    agent_pid: int
    #: Checks every envelope's signature against the orchestrator's public key.
    verifier: Verifier
    #: The once-only ledger on the endpoint's disk: a command id is claimed there first.
    ledger: Ledger
    #: Records refusals in the audit stream.
    audit: AgentAudit
    #: Where the broker is, for isolation (see CommandContext.broker_endpoints).
    broker_endpoints: tuple[BrokerEndpoint, ...] | None = None
    #: The agent's settings, handed to handlers in their context.
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        self.states = CommandStateStore(self.client, self.keys)

    def execute(
        self, spec: CommandSpec, raw: object, task_id: str | None = None
    ) -> dict[str, object]:
        """Run one task's payload and return a CommandOutcome as JSON-able dict.

        `task_id` is the Celery task id the payload arrived under; it must be the command id.
        """
        started = clock.now()
        try:
            envelope = CommandEnvelope.model_validate(raw)
        except ValidationError:
            message = "the task's envelope is malformed"
            command_id = clip(raw.get("command_id", "") if isinstance(raw, dict) else "")
            self._audit_refusal(CommandStatus.REJECTED, "malformed_envelope", message,
                                command_id=command_id, command=spec.name, key_id=None)
            return self._outcome_raw(spec, command_id, CommandStatus.REJECTED,
                                     "malformed_envelope", message)
        refusal = self._refuse(spec, envelope, task_id)
        if refusal is not None:
            status, code, message = refusal
            log.warning("refused %s %s: %s", envelope.command, envelope.command_id, message)
            self._audit_refusal(status, code, message, command_id=envelope.command_id,
                                command=envelope.command, key_id=envelope.key_id)
            return self._outcome(envelope, status, error=ErrorInfo(code=code, message=message))
        try:
            args = spec.args_model.model_validate(envelope.args)
            result = self.handlers[spec.name](args, self._context(spec, envelope))
            body, truncated = truncate_result(result.model_dump(mode="json"),
                                              self.output_max_bytes)
            return self._finish(envelope, CommandStatus.COMPLETED, started,
                                result=body, truncated=truncated)
        except SoftTimeLimitExceeded:
            err: CommandFailedError = CommandTimeoutError(
                f"{spec.name} ran past its time limit and was stopped")
            return self._finish(envelope, CommandStatus.FAILED, started, error=err)
        except ValidationError as exc:
            first = exc.errors()[0]
            err = CommandFailedError(f"{spec.name}: bad argument {first['loc']}: {first['msg']}")
            return self._finish(envelope, CommandStatus.FAILED, started, error=err)
        except LiveResponseError as exc:
            return self._finish(envelope, CommandStatus.FAILED, started, error=exc)
        except Exception:  # a handler bug must still answer, never leave the analyst waiting
            log.exception("handler %s crashed on %s", spec.name, envelope.command_id)
            err = CommandFailedError(f"{spec.name} failed on the agent with an internal error",
                                     hint="the agent's log has the details")
            return self._finish(envelope, CommandStatus.FAILED, started, error=err)

    def abandon(self, spec: CommandSpec, raw: object) -> dict[str, object]:
        """The outcome of a command still running at its hard time limit, its end recorded:
        failed as timed out (the agent's watchdog calls this from its own thread)."""
        err = CommandTimeoutError(
            f"{spec.name} ran past its time limit and did not stop; the agent abandoned it",
            hint="it was stuck in a system call; the agent's log names it (an agent run with "
                 "LR_AGENT_POOL=prefork kills such a command instead)")
        try:
            envelope = CommandEnvelope.model_validate(raw)
        except ValidationError:
            command_id = clip(raw.get("command_id", "") if isinstance(raw, dict) else "")
            return self._outcome_raw(spec, command_id, CommandStatus.FAILED, err.code,
                                     err.message)
        return self._finish(envelope, CommandStatus.FAILED, None, error=err)

    def _refuse(
        self, spec: CommandSpec, env: CommandEnvelope, task_id: str | None
    ) -> Refusal | None:
        """Why this envelope must not run, or None. Claims it in the ledger, then moves it to
        running in Redis, when it may run.

        The signature comes first: nothing else in an envelope means anything until the
        orchestrator is known to have written it.
        """
        try:
            self.verifier.verify(env)
        except SignatureError as exc:
            return (CommandStatus.REJECTED, exc.code, exc.message)
        if env.device_id != self.device_id:
            return (CommandStatus.REJECTED, "wrong_device",
                    f"addressed to device {env.device_id!r}, this is {self.device_id!r}")
        if env.command != spec.name:
            return (CommandStatus.REJECTED, "wrong_task",
                    f"envelope for {env.command!r} arrived as task {spec.name!r}")
        if task_id is not None and task_id != env.command_id:
            return (CommandStatus.REJECTED, "wrong_task_id",
                    f"command {env.command_id} arrived as task {task_id}: a signed envelope "
                    "re-sent under another task id")
        now = clock.now()
        if now > env.expires_at:
            self.states.transition(env.command_id, CommandStatus.EXPIRED,
                                   [CommandStatus.QUEUED])
            return (CommandStatus.EXPIRED, "expired",
                    "the command expired before the agent could start it")
        lifetime_s = max(env.expires_at - now, env.expires_at - env.issued_at)
        max_s = self.settings.envelope_max_lifetime_s
        if lifetime_s > max_s:
            return (CommandStatus.REJECTED, "expiry_too_far",
                    f"the command's expiry lies {lifetime_s:.0f} s ahead; this agent takes "
                    f"commands valid for at most {max_s:g} s")
        # The ledger on the endpoint's disk is the authority on "never twice": the claim comes
        # before the state in Redis, which anyone who can write to Redis can reset.
        try:
            claimed = self.ledger.claim(env.command_id, env.expires_at, now)
        except LedgerError as exc:
            return (CommandStatus.REJECTED, exc.code, exc.message)
        if not claimed:
            return (CommandStatus.REJECTED, REPLAYED,
                    f"command {env.command_id} was already started once; never run twice")
        moved, before = self.states.transition(env.command_id, CommandStatus.RUNNING,
                                               [CommandStatus.QUEUED],
                                               {"started_at": repr(now)})
        if moved:
            return None
        if before is None:
            return (CommandStatus.REJECTED, "unknown_command_id",
                    "the orchestrator has no record of this command")
        if before in (CommandStatus.CANCELLED, CommandStatus.EXPIRED):
            return (before, before.value,
                    f"the command was {before.value} before it could start; dropped")
        return (CommandStatus.REJECTED, REPLAYED,
                f"command {env.command_id} is {before.value}: it already started once; "
                "never run twice")

    def _audit_refusal(self, status: CommandStatus, code: str, message: str, *,
                       command_id: str, command: str, key_id: str | None) -> None:
        """Record a refused task in the audit stream (never its signature or arguments)."""
        self.audit.rejected(code, message, command_id=command_id, command=command,
                            key_id=key_id, expired=status is CommandStatus.EXPIRED)

    def _context(self, spec: CommandSpec, env: CommandEnvelope) -> CommandContext:
        # Walking the process table costs milliseconds: only commands that act need it.
        protected = (self._protected_pids() if spec.destructive or spec.protects_agent
                     else {1, os.getpid()})
        return CommandContext(
            device_id=self.device_id,
            cwd=env.cwd,
            protected_pids=frozenset(protected),
            output_max_bytes=self.output_max_bytes,
            broker_endpoints=self.broker_endpoints,
            command_id=env.command_id,
            client=self.client,
            keys=self.keys,
            settings=self.settings,
        )

    def _protected_pids(self) -> set[int]:
        """Pid 1, the agent's main process, its parent, and its children (prefork pool
        processes, the programs of running commands)."""
        pids = {1, os.getpid(), self.agent_pid}
        try:
            main = psutil.Process(self.agent_pid)
            pids.add(main.ppid())
            pids.update(child.pid for child in main.children(recursive=True))
        except psutil.Error:
            pass
        return pids

    def _finish(
        self,
        env: CommandEnvelope,
        status: CommandStatus,
        started: float | None,
        *,
        result: dict[str, object] | None = None,
        truncated: bool = False,
        error: LiveResponseError | None = None,
    ) -> dict[str, object]:
        finished = clock.now()
        self._record_end(env.command_id, status, finished)
        info = ErrorInfo(**error.to_dict()) if error else None
        return self._outcome(env, status, result=result, error=info, truncated=truncated,
                             started_at=started, finished_at=finished)

    def _record_end(self, command_id: str, status: CommandStatus, finished: float) -> None:
        """Move the command from running to `status` in Redis, waiting out a Redis restart:
        a command that ended while Redis was away still answers with what it did."""
        deadline = time.monotonic() + END_RETRY_S
        pause = 0.1
        while True:
            try:
                self.states.transition(command_id, status, [CommandStatus.RUNNING],
                                       {"finished_at": repr(finished)})
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() + pause > deadline:
                    # The outcome still goes to the result backend; the orchestrator records it.
                    log.error("could not record the end of %s in Redis: %s", command_id, exc)
                    return
                log.warning("Redis unreachable recording the end of %s; retrying: %s",
                            command_id, exc)
                time.sleep(pause)
                pause = min(pause * 2, END_RETRY_PAUSE_MAX_S)

    def _outcome(self, env: CommandEnvelope, status: CommandStatus, **fields: object) -> dict:
        return CommandOutcome(command_id=env.command_id, device_id=self.device_id,
                              command=env.command, status=status,
                              **fields).model_dump(mode="json")  # type: ignore[arg-type]

    def _outcome_raw(self, spec: CommandSpec, command_id: str, status: CommandStatus,
                     code: str, message: str) -> dict:
        return CommandOutcome(command_id=command_id, device_id=self.device_id,
                              command=spec.name, status=status,
                              error=ErrorInfo(code=code, message=message)).model_dump(mode="json")
