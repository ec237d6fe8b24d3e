"""The agent's own audit entries: what it refused, dropped or cancelled, never arguments."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from tasks.auditchain import AuditChain
from tasks.errors import LiveResponseError

log = logging.getLogger(__name__)

#: Longest id or name copied from an untrusted message into an audit entry.
MAX_NAME_CHARS = 128


def clip(value: object) -> str:
    """`value` as a short string: what an untrusted message may put into an audit entry."""
    return str(value if value is not None else "")[:MAX_NAME_CHARS]


@dataclass
class AgentAudit:
    """Appends the entries of one device's agent (actor `agent:<device id>`)."""

    device_id: str
    audit: AuditChain

    def record(self, action: str, target: str, decision: str, **details: Any) -> None:
        """Append one entry; an audit stream that cannot be written is logged, never raised.

        What the agent refused stays refused either way; the caller has already decided.
        """
        try:
            self.audit.append(f"agent:{self.device_id}", action, target, decision,
                              device=self.device_id, **details)
        except (redis.RedisError, LiveResponseError, ValueError) as exc:
            log.error("could not audit %s of %s: %s", action, target, exc)

    def rejected(self, reason: str, message: str, *, command_id: str = "", command: str = "",
                 key_id: str | None = None, expired: bool = False, target: str | None = None,
                 **details: Any) -> None:
        """Record a refusal (`agent.expired` when `expired`, else `agent.rejected`); its
        target is the command id, else `target`, else the device."""
        self.record("agent.expired" if expired else "agent.rejected",
                    command_id or target or self.device_id, "rejected",
                    command_id=command_id, command=command, reason=reason, message=message,
                    key_id=key_id, **details)
