"""The policy in force, kept in Redis so every orchestrator process enforces the same one."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from orchestrator.policies.loader import dump_policy, parse_policy, read_policy_text
from orchestrator.policies.model import Policy, default_policy
from tasks import clock
from tasks.auditchain import AuditChain
from tasks.keys import Keys
from tasks.replies import as_text

#: How long a process trusts its copy before it reads the policy again (a change made by
#: another orchestrator process applies everywhere within this many seconds).
REFRESH_S = 2.0


@dataclass(frozen=True)
class PolicyInForce:
    """The policy, its source text and digest, and who set it (None: the built-in default)."""

    policy: Policy
    text: str
    digest: str
    set_by: str | None
    set_at: float | None


def text_digest(text: str) -> str:
    """`sha256:<hex>` of policy text: what the audit stream records of a policy change."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class PolicyStore:
    """Reads (cached briefly) and replaces the policy in `lr:policy`."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._cached: PolicyInForce | None = None
        self._read_at = 0.0

    def current(self) -> PolicyInForce:
        """The policy in force: the stored one, or the built-in default when none is stored."""
        now = time.monotonic()
        if self._cached is None or now - self._read_at > REFRESH_S:
            self._cached = self._load()
            self._read_at = now
        return self._cached

    @property
    def policy(self) -> Policy:
        """Shortcut: the Policy model in force."""
        return self.current().policy

    def replace(self, policy: Policy, text: str, actor: str) -> tuple[PolicyInForce, str]:
        """Make `policy`, parsed from `text` (see parse_policy), the policy in force; return
        (new, previous digest)."""
        previous = self.current().digest
        now = clock.now()
        # Any keys: redis-py's stubs want a mapping over every key type it accepts.
        fields: dict[Any, str] = {"yaml": text, "digest": text_digest(text), "set_by": actor,
                                  "set_at": repr(now)}
        self.client.hset(self.keys.policy, mapping=fields)
        self._cached = PolicyInForce(policy, text, fields["digest"], actor, now)
        self._read_at = time.monotonic()
        return self._cached, previous

    def load_at_start(self, path: Path, audit: AuditChain) -> str:
        """Put the policy file `path` in force (audited) unless it already is; say which."""
        text = read_policy_text(path)
        if text_digest(text) == self.current().digest:
            return f"{path} already in force ({text_digest(text)})"
        policy = parse_policy(text, source=str(path))
        new, previous = self.replace(policy, text, "orchestrator")
        audit.append("orchestrator", "policy.changed", "policy", "allowed", source=str(path),
                     digest=new.digest, previous_digest=previous)
        return f"{path} now in force ({new.digest})"

    def _load(self) -> PolicyInForce:
        raw = self.client.hgetall(self.keys.policy)
        if not raw:
            policy = default_policy()
            text = dump_policy(policy)
            return PolicyInForce(policy, text, text_digest(text), None, None)
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        text = fields["yaml"]
        # Stored text was validated when it was set; a registry change since may still
        # invalidate it, which must stop the orchestrator loudly rather than grant by accident.
        policy = parse_policy(text, source="stored policy")
        return PolicyInForce(policy, text, fields["digest"], fields.get("set_by"),
                             float(fields["set_at"]) if fields.get("set_at") else None)
