"""The one runner: an entry point's ordered checks, then its action; every decision audited.

A check is a small function of the `Request` that fills in what it found (the user, the
session, the device, the parsed command ...) or raises a typed denial. `Pipeline.run` runs
the checks in their declared order and then the entry point's `admit` action; it, not the
caller, writes the audit entry of a denial, and any exception inside a check or the action
is a denial too (`CheckFailedError`), audited, never an unaudited 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.redis_outage import UNREACHABLE
from tasks.durations import check_expiry
from tasks.errors import AuthenticationError, CheckFailedError, LiveResponseError

if TYPE_CHECKING:
    from config import Settings
    from orchestrator.commands.records import CommandRecord
    from orchestrator.plane import ControlPlane
    from orchestrator.policies.model import ApprovalRule
    from orchestrator.state.devices import Device
    from orchestrator.state.identity import User
    from orchestrator.state.reads import Reads
    from orchestrator.state.sessions import Session
    from tasks.commands.base import CommandArgs
    from tasks.registry import CommandSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Audit action of a failed authentication, whatever the entry point.
AUTH_FAILED = "auth.failed"
#: Actor of entries about a request whose user is not known (yet).
ANONYMOUS = "anonymous"


@dataclass
class Request:
    """What one entry point is asked, and what its checks found out, in order."""

    plane: ControlPlane
    #: What is audited as the target (a device, session, command id or route).
    target: str
    #: The bearer token as sent (never audited); `authenticate` turns it into `user`.
    token: str | None = None
    user: User | None = None
    session_id: str | None = None
    device_id: str | None = None
    command_id: str | None = None
    line: str | None = None
    #: The permission a read or admin route needs (commands derive theirs from the spec).
    permission: str | None = None
    session: Session | None = None
    device: Device | None = None
    record: CommandRecord | None = None
    spec: CommandSpec | None = None
    args: CommandArgs | None = None
    rule: ApprovalRule | None = None
    #: How long the command may wait for its agent, as asked (None: the default).
    expires_s: float | None = None
    #: The caller named `command_id` itself (it must not be one already recorded).
    caller_command_id: bool = False
    #: More to say in the audit entry of this request (plain JSON values).
    details: dict[str, Any] = field(default_factory=dict)
    #: The request's first reads, fetched together (`checks.reads_of`, state.reads).
    reads: Reads | None = None

    @property
    def actor(self) -> str:
        return self.user.name if self.user is not None else ANONYMOUS

    def expiry_s(self, settings: Settings) -> float:
        """How long the command may wait for its agent: as asked, within the maximum."""
        return check_expiry(self.expires_s, settings.command_expiry_s,
                            settings.command_expiry_max_s)

    def need_user(self) -> User:
        """The authenticated user (a pipeline without `authenticate` first is a bug)."""
        if self.user is None:
            raise AuthenticationError("not authenticated", hint="pass a token with LR_TOKEN")
        return self.user

    def audit_details(self) -> dict[str, Any]:
        """The request's identifying fields for an audit entry (unset ones left out)."""
        known = {
            "session": self.session_id or None,
            "device": self.device_id or (self.device.id if self.device else None),
            "command_id": self.command_id,
            "command": self.spec.name if self.spec else None,
            "line": self.line,
            "permission": self.permission,
            "expires_s": self.expires_s,
        }
        return {k: v for k, v in {**known, **self.details}.items() if v is not None}


#: A check: fills in the request or raises a denial (any exception counts as one).
Check = Callable[[Request], None]


@dataclass(frozen=True)
class Pipeline:
    """One entry point's declared, ordered checks and the audit actions of its decisions."""

    name: str
    checks: tuple[Check, ...]
    #: Audit action of a denial (an authentication failure is always `auth.failed`).
    denied: str
    #: Audit action of an allow with no `admit` action of its own; None: `admit` writes it.
    allowed: str | None = None

    def then(self, *checks: Check, name: str | None = None, denied: str | None = None,
             allowed: str | None = None) -> Pipeline:
        """This pipeline with more checks after its own."""
        return Pipeline(name or self.name, (*self.checks, *checks), denied or self.denied,
                        allowed if allowed is not None else self.allowed)

    def check(self, req: Request) -> Request:
        """Run every check (no action of its own); audit the decision; raise the denial."""
        return self.run(req, lambda checked: checked)

    def run(self, req: Request, admit: Callable[[Request], T]) -> T:
        """Run every check, then `admit(req)`; audit the decision; raise the denial."""
        try:
            for check in self.checks:
                check(req)
            admitted = admit(req)
        except LiveResponseError as exc:
            self._audit_denial(req, exc)
            raise
        except UNREACHABLE:
            # Redis is down: nothing can be checked or audited; the API answers 503.
            raise
        except Exception as exc:
            log.exception("check of %s failed on %s", self.name, req.target)
            denial = CheckFailedError(
                f"{self.name}: a check could not be completed ({type(exc).__name__}); "
                "the request is denied",
                hint="retry; if it persists, see the orchestrator's log")
            self._audit_denial(req, denial)
            raise denial from exc
        if self.allowed is not None:
            req.plane.audit.append(req.actor, self.allowed, req.target, "allowed",
                                   **req.audit_details())
        return admitted

    def _audit_denial(self, req: Request, exc: LiveResponseError) -> None:
        action = AUTH_FAILED if isinstance(exc, AuthenticationError) else self.denied
        try:
            req.plane.audit.append(req.actor, action, req.target, "denied",
                                   **req.audit_details(), reason=exc.code, message=exc.message)
        except Exception:  # the denial stands even when it cannot be written down
            log.exception("could not audit the denial of %s on %s", self.name, req.target)


def names(checks: Sequence[Check]) -> list[str]:
    """The checks' names in order (what `lr` shows and the tests compare)."""
    return [getattr(c, "__name__", repr(c)) for c in checks]
