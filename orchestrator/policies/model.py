"""The RBAC policy as data: roles, device groups, approval rules, and a user's grants."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from tasks.registry import (
    PERM_ADMIN,
    PERM_COLLECT,
    PERM_EXECUTE,
    PERM_ISOLATE,
    PERM_READ,
    PERM_REMEDIATE,
    REGISTRY,
)

#: Read devices, sessions, jobs and the audit stream.
PERM_VIEW = "view"
#: Open live-response sessions.
PERM_SESSION = "session.open"
#: Send alerts that start the playbooks they trigger (a SIEM's or EDR's service account).
PERM_ALERT = "alert.submit"
# PERM_ADMIN (users, tokens, policy; --force flags) is declared with the command permissions.

#: Every permission a role may list, with what it allows.
PERMISSIONS: dict[str, str] = {
    PERM_VIEW: "list devices, sessions and commands; read the audit stream",
    PERM_SESSION: "open live-response sessions",
    PERM_READ: "read-only commands (dir, fileinfo, processes, ...)",
    PERM_COLLECT: "copy data off the endpoint (getfile, collect, env; memdump with live.execute)",
    PERM_EXECUTE: "write to the endpoint or run code there (put, runscript)",
    PERM_REMEDIATE: "end processes, quarantine files (kill, remediate)",
    PERM_ISOLATE: "network containment (isolate, release)",
    PERM_ADMIN: "users, tokens, policy, audit trimming, --force past safety lists",
    PERM_ALERT: "send alerts that start the playbooks they trigger",
}
#: Permissions that are not about a device: a scoped grant never confers them.
GLOBAL_PERMISSIONS = frozenset({PERM_ADMIN})

#: Role names, and device tags used as groups (e.g. `group:finance`, `critical`).
NAME_RE = re.compile(r"[a-z0-9._-]{1,64}")
TAG_RE = re.compile(r"[A-Za-z0-9._:/-]{1,64}")


class RoleDef(BaseModel):
    """A role: its own permissions, roles it includes, and optionally the groups it is bound to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    permissions: list[str] = Field(default_factory=list)
    inherits: list[str] = Field(default_factory=list)
    #: When set, the role applies only on devices carrying one of these tags.
    scopes: list[str] | None = None
    description: str | None = None


class ApprovalRule(BaseModel):
    """Commands that wait for a second person on devices carrying any of `device_tags`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commands: list[str] = Field(min_length=1)
    #: Empty means every device.
    device_tags: list[str] = Field(default_factory=list)
    #: How long the command waits for a decision before it expires.
    timeout_s: float = Field(default=15 * 60, gt=0, le=7 * 24 * 3600)


class Policy(BaseModel):
    """The whole policy. `groups`, when given, lists every tag a scope or rule may name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    groups: list[str] | None = None
    roles: dict[str, RoleDef]
    approvals: list[ApprovalRule] = Field(default_factory=list)

    def role_permissions(self, role: str) -> frozenset[str]:
        """Permissions of `role` including inherited ones; unknown roles grant nothing."""
        seen: set[str] = set()
        out: set[str] = set()
        todo = [role]
        while todo:
            name = todo.pop()
            if name in seen or name not in self.roles:
                continue
            seen.add(name)
            out.update(self.roles[name].permissions)
            todo.extend(self.roles[name].inherits)
        return frozenset(out)

    def approval_rule(self, command: str, device_tags: list[str]) -> ApprovalRule | None:
        """The first rule making `command` on a device with `device_tags` wait for approval."""
        for rule in self.approvals:
            if command in rule.commands and (
                not rule.device_tags or set(rule.device_tags).intersection(device_tags)
            ):
                return rule
        return None

    def role_scopes(self, role: str) -> list[str] | None:
        """The groups `role` is bound to, or None when it applies everywhere."""
        definition = self.roles.get(role)
        return definition.scopes if definition else None


class Grant(BaseModel):
    """One role held by a user, on every device (scope None) or on devices tagged `scope`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    scope: str | None = None

    def __str__(self) -> str:
        return self.role if self.scope is None else f"{self.role}@{self.scope}"


def default_policy() -> Policy:
    """The DESIGN defaults: viewer ⊂ responder ⊂ advanced ⊂ admin, approvals on `critical`."""
    needs_second_person = [c for c in ("remediate", "kill", "isolate") if c in REGISTRY]
    return Policy(
        roles={
            "viewer": RoleDef(permissions=[PERM_VIEW],
                              description="list devices, sessions; read the audit stream"),
            "responder": RoleDef(inherits=["viewer"], permissions=[PERM_SESSION, PERM_READ],
                                 description="open sessions; read-only commands"),
            "advanced": RoleDef(inherits=["responder"],
                                permissions=[PERM_COLLECT, PERM_EXECUTE, PERM_REMEDIATE],
                                description="responder + getfile, collect, memdump, put, "
                                            "runscript, kill, remediate"),
            "admin": RoleDef(inherits=["advanced"], permissions=[PERM_ISOLATE, PERM_ADMIN],
                             description="advanced + isolate, release, users, tokens, policy"),
            "automation": RoleDef(
                permissions=[PERM_ALERT, PERM_SESSION, PERM_READ, PERM_COLLECT, PERM_REMEDIATE],
                description="service account of a SIEM/EDR: alerts start the shipped "
                            "playbooks (read, collect, remediate)"),
        },
        approvals=[ApprovalRule(commands=needs_second_person, device_tags=["critical"])],
    )
