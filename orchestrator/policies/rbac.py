"""Roles and their permissions (DESIGN defaults); any doubt means deny."""

from __future__ import annotations

from tasks.errors import PermissionDeniedError
from tasks.registry import PERM_COLLECT, PERM_EXECUTE, PERM_ISOLATE, PERM_READ, PERM_REMEDIATE

#: Read devices, sessions, jobs and the audit stream.
PERM_VIEW = "view"
#: Open live-response sessions.
PERM_SESSION = "session.open"
#: Manage users, tokens, library and policy.
PERM_ADMIN = "admin"

_VIEWER = frozenset({PERM_VIEW})
_RESPONDER = _VIEWER | {PERM_SESSION, PERM_READ}
_ADVANCED = _RESPONDER | {PERM_COLLECT, PERM_EXECUTE, PERM_REMEDIATE}
_ADMIN = _ADVANCED | {PERM_ISOLATE, PERM_ADMIN}

#: Default roles; the policy file may redefine them.
DEFAULT_ROLES: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "responder": _RESPONDER,
    "advanced": _ADVANCED,
    "admin": _ADMIN,
}


def permissions_of(roles: list[str], policy: dict[str, frozenset[str]] = DEFAULT_ROLES) -> set[str]:
    """Union of the permissions of `roles`; unknown roles grant nothing."""
    out: set[str] = set()
    for role in roles:
        out |= policy.get(role, frozenset())
    return out


def require(user_name: str, roles: list[str], permission: str) -> None:
    """Raise PermissionDeniedError unless `roles` grant `permission`."""
    if permission not in permissions_of(roles):
        raise PermissionDeniedError(
            f"user {user_name!r} lacks permission {permission!r}",
            hint="ask an admin for a role that grants it",
        )
