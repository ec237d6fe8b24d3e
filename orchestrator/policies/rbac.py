"""Authorization: does a user's grant, under the policy, confer a permission on a device?

A grant confers its role's permissions on a device when neither the grant nor the role is
scoped, or when the device carries the scope tag (and one of the role's scopes, if it has
any). Without a device (listing, admin work), any grant counts except for the global
permissions, which only an unscoped grant of an unscoped role confers. Any doubt means deny.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.policies.model import (
    GLOBAL_PERMISSIONS,
    PERM_ADMIN,
    PERM_SESSION,
    PERM_VIEW,
    Grant,
    Policy,
)
from tasks.errors import PermissionDeniedError, UsageError

__all__ = ["PERM_ADMIN", "PERM_SESSION", "PERM_VIEW", "authorize", "is_allowed"]


def _grant_applies(policy: Policy, grant: Grant, tags: Iterable[str] | None) -> bool:
    role_scopes = policy.role_scopes(grant.role)
    if tags is None:  # no device: the grant counts as long as it is not bound to groups
        return True
    tag_set = set(tags)
    if grant.scope is not None and grant.scope not in tag_set:
        return False
    return role_scopes is None or bool(tag_set.intersection(role_scopes))


def is_allowed(policy: Policy, grants: Sequence[Grant], permission: str,
               device_tags: Iterable[str] | None = None) -> bool:
    """True when some grant confers `permission` (on a device with `device_tags`, if given)."""
    tags = list(device_tags) if device_tags is not None else None
    for grant in grants:
        if permission not in policy.role_permissions(grant.role):
            continue
        if permission in GLOBAL_PERMISSIONS and (
            grant.scope is not None or policy.role_scopes(grant.role) is not None
        ):
            continue
        if _grant_applies(policy, grant, tags):
            return True
    return False


def authorize(policy: Policy, user_name: str, grants: Sequence[Grant], permission: str,
              device_id: str | None = None, device_tags: Iterable[str] | None = None) -> None:
    """Raise PermissionDeniedError naming the missing permission unless it is granted."""
    tags = list(device_tags or []) if device_id is not None else None
    if is_allowed(policy, grants, permission, tags):
        return
    held = ", ".join(str(g) for g in grants) or "none"
    where = ""
    if device_id is not None:
        where = f" on device {device_id!r} (groups: {', '.join(tags or []) or 'none'})"
    raise PermissionDeniedError(
        f"user {user_name!r} lacks permission {permission!r}{where}; roles held: {held}",
        hint="ask an admin for a role that grants it"
        + (" on this device's group" if device_id is not None else ""),
    )


def check_grant(policy: Policy, grant: Grant) -> Grant:
    """Return `grant` if the policy knows its role and (when groups are declared) its scope."""
    if grant.role not in policy.roles:
        raise UsageError(f"unknown role {grant.role!r}",
                         hint=f"roles in the policy: {', '.join(policy.roles)}")
    if grant.scope is not None and policy.groups is not None and grant.scope not in policy.groups:
        raise UsageError(f"unknown group {grant.scope!r}",
                         hint=f"groups in the policy: {', '.join(policy.groups) or 'none'}")
    return grant
