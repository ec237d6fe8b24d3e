"""HTTP routes of administration: users and their grants, API tokens, the policy.

Every route needs the global `admin` permission (revoking one's own token excepted), and
every call, refused or not, is an audit entry. Tokens appear once, in the creating answer.
"""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from orchestrator.api.guard import Guards
from orchestrator.api.responses import errors
from orchestrator.plane import ControlPlane
from orchestrator.policies.checks import requires
from orchestrator.policies.loader import parse_policy
from orchestrator.policies.model import PERM_ADMIN, Grant
from orchestrator.policies.pipeline import Pipeline, Request
from orchestrator.policies.rbac import check_grant, is_allowed
from orchestrator.state.identity import (
    User,
    create_user,
    find_token,
    get_user,
    issue_token,
    list_users,
    revoke_token_hash,
    set_grants,
    token_id,
)
from tasks import clock
from tasks.errors import LiveResponseError, NotFoundError, UsageError


class UserBody(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    grants: list[Grant] = Field(min_length=1, max_length=64)


#: Longest lifetime a token may be given (ten years).
MAX_TOKEN_TTL_S = 10 * 365 * 24 * 3600.0


class TokenBody(BaseModel):
    ttl_s: float | None = Field(default=None, strict=True, gt=0, le=MAX_TOKEN_TTL_S,
                                allow_inf_nan=False, description="lifetime; none: until revoked")


class RevokeBody(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class TagsBody(BaseModel):
    tags: list[str] = Field(max_length=64)


class PolicyBody(BaseModel):
    yaml: str = Field(min_length=1, max_length=256 * 1024)
    source: str = Field(default="policy", max_length=200)


def add_admin_routes(app: FastAPI, plane: ControlPlane, guards: Guards) -> None:
    """Register /users, /tokens and /policy on `app`."""
    #: Admin routes write their own outcome entry; the read of the users is audited.
    admin = guards.requires(PERM_ADMIN, audited=False)
    as_admin = Pipeline("token.revoke", (requires(PERM_ADMIN),), denied="access.denied")

    @contextmanager
    def audited(actor: User, action: str, target: str, **details: Any) -> Iterator[None]:
        """Audit `<action>.refused` with the reason when the body raises one of our errors."""
        try:
            yield
        except LiveResponseError as exc:
            plane.audit.append(actor.name, f"{action}.refused", target, "denied",
                               reason=exc.code, message=exc.message, **details)
            raise

    def user_view(user: User) -> dict[str, Any]:
        return {"name": user.name, "roles": user.roles, "created_at": user.created_at,
                "grants": [g.model_dump() for g in user.grants]}

    @app.get("/users")
    def users(req: Annotated[Request, Depends(guards.requires(PERM_ADMIN))]
              ) -> list[dict[str, Any]]:
        """Admin."""
        return [user_view(u) for u in list_users(plane.client, plane.keys)]

    @app.post("/users", status_code=201)
    def add_user(body: UserBody, req: Annotated[Request, Depends(admin)]) -> dict[str, Any]:
        """Admin; every grant names a role (and group) of the policy in force."""
        user = req.need_user()
        grants = [g.model_dump() for g in body.grants]
        with audited(user, "user.create", body.name, user=body.name, grants=grants):
            for grant in body.grants:
                check_grant(plane.policies.policy, grant)
            created = create_user(plane.client, plane.keys, body.name, grants=body.grants)
        plane.audit.append(user.name, "user.created", created.name, "allowed",
                           user=created.name, grants=grants)
        return user_view(created)

    @app.post("/users/{name}/grants")
    def add_grant(name: str, body: Grant,
                  req: Annotated[Request, Depends(admin)]) -> dict[str, Any]:
        """Admin; the grant names a role (and group) of the policy in force."""
        user = req.need_user()
        with audited(user, "user.grant", name, user=name, grant=body.model_dump()):
            check_grant(plane.policies.policy, body)
            target = get_user(plane.client, plane.keys, name)
            updated = set_grants(plane.client, plane.keys, name, [*target.grants, body])
        plane.audit.append(user.name, "user.granted", name, "allowed", user=name,
                           grant=body.model_dump())
        return user_view(updated)

    @app.post("/users/{name}/tokens", status_code=201)
    def create_token(name: str, req: Annotated[Request, Depends(admin)],
                     body: TokenBody | None = None) -> dict[str, Any]:
        """Admin. The token is in this answer only; the audit records its id."""
        user = req.need_user()
        ttl_s = body.ttl_s if body else None
        with audited(user, "token.create", name, user=name, ttl_s=ttl_s):
            token = issue_token(plane.client, plane.keys, name, ttl_s=ttl_s)
        expires_at = clock.now() + ttl_s if ttl_s is not None else None
        plane.audit.append(user.name, "token.created", name, "allowed", user=name,
                           token_id=token_id(token), expires_at=expires_at)
        return {"user": name, "token": token, "token_id": token_id(token),
                "expires_at": expires_at}

    @app.post("/tokens/revoke", responses=errors(404))
    def revoke(body: RevokeBody,
               req: Annotated[Request, Depends(guards.requires(None, audited=False))]
               ) -> dict[str, Any]:
        """Admin, or the owner of the token (anyone may revoke their own)."""
        user = req.need_user()
        shown = body.token if len(body.token) == 12 else "given token"
        with audited(user, "token.revoke", shown):
            found = find_token(plane.client, plane.keys, body.token)
            if found is None:
                raise NotFoundError("no such token (never issued, or already revoked)",
                                    hint="list a user's tokens' ids with `lr admin user list`")
            digest, owner = found
            if owner != user.name:
                as_admin.check(Request(plane, target=f"token {digest[:12]}", user=user))
            revoke_token_hash(plane.client, plane.keys, digest, owner)
        plane.audit.append(user.name, "token.revoked", owner, "allowed", user=owner,
                           token_id=digest[:12])
        return {"user": owner, "token_id": digest[:12], "revoked": True}

    @app.put("/devices/{device_id}/tags")
    def set_tags(device_id: str, body: TagsBody,
                 req: Annotated[Request, Depends(admin)]) -> dict[str, Any]:
        """Admin. Tags are the device's groups: scopes and approval rules name them;
        the orchestrator sets them, never the endpoint itself."""
        user = req.need_user()
        with audited(user, "device.tag", device_id, device=device_id, tags=body.tags):
            before = plane.devices.get(device_id).tags
            device = plane.devices.set_tags(device_id, body.tags)
        plane.audit.append(user.name, "device.tagged", device_id, "allowed", device=device_id,
                           tags=device.tags, previous_tags=before)
        return device.model_dump(mode="json")

    @app.delete("/devices/{device_id}")
    def remove_device(device_id: str,
                      req: Annotated[Request, Depends(admin)]) -> dict[str, Any]:
        """Admin. Forget a decommissioned (offline) device: record, queue, bindings."""
        user = req.need_user()
        with audited(user, "device.remove", device_id, device=device_id):
            waiting = plane.devices.remove(device_id)
        plane.audit.append(user.name, "device.removed", device_id, "allowed", device=device_id,
                           waiting_commands_dropped=waiting)
        return {"id": device_id, "removed": True, "waiting_commands_dropped": waiting}

    @app.get("/policy")
    def get_policy(req: Annotated[Request, Depends(guards.requires(None))]) -> dict[str, Any]:
        """Authenticated: every user may read the rules applied to them."""
        current = plane.policies.current()
        return {"yaml": current.text, "digest": current.digest, "set_by": current.set_by,
                "set_at": current.set_at, "default": current.set_by is None}

    @app.put("/policy")
    def put_policy(body: PolicyBody, req: Annotated[Request, Depends(admin)]) -> dict[str, Any]:
        """Admin; the text must validate (errors name line and field)."""
        user = req.need_user()
        with audited(user, "policy.change", "policy", source=body.source):
            policy = parse_policy(body.yaml, source=body.source)
            everyone = list_users(plane.client, plane.keys)
            if not any(is_allowed(policy, u.grants, PERM_ADMIN) for u in everyone):
                raise UsageError(
                    f"{body.source}: under this policy no user would hold {PERM_ADMIN!r}; "
                    "nobody could change it back",
                    hint="keep a role with the admin permission that an existing user holds")
            new, previous = plane.policies.replace(policy, body.yaml, user.name)
        plane.audit.append(user.name, "policy.changed", "policy", "allowed",
                           source=body.source, digest=new.digest, previous_digest=previous)
        orphans = [f"{u.name}:{g}" for u in everyone for g in u.grants
                   if g.role not in new.policy.roles]
        return {"digest": new.digest, "previous_digest": previous, "orphaned_grants": orphans}
