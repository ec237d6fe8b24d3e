"""Users and their API tokens in Redis; tokens are kept only as sha256 digests."""

from __future__ import annotations

import hashlib
import json
import re
import secrets

import redis
from pydantic import BaseModel, ConfigDict

from tasks import clock
from tasks.errors import AuthenticationError, LiveResponseError, NotFoundError, UsageError
from tasks.keys import Keys
from tasks.replies import as_text

#: What a user name may look like: it becomes part of key names and audit entries.
USER_NAME_RE = re.compile(r"[a-z0-9._-]{1,64}")
#: What a role name may look like (roles are plain data until RBAC gives them meaning).
ROLE_NAME_RE = re.compile(r"[a-z0-9._-]{1,64}")
#: Every token starts with this, so a pasted token is recognisable (and scannable in leaks).
TOKEN_PREFIX = "lr_"
#: A well-formed token: the prefix and 43 url-safe characters (`secrets.token_urlsafe(32)`).
TOKEN_RE = re.compile(r"lr_[A-Za-z0-9_-]{43}")
#: What every authentication failure tells the user to do.
TOKEN_HINT = "pass a token with LR_TOKEN or --token"


class User(BaseModel):
    """A person or a playbook that may call the orchestrator."""

    model_config = ConfigDict(frozen=True)

    name: str
    roles: list[str]
    created_at: float


def hash_token(token: str) -> str:
    """The hex sha256 under which a token is stored; the plain token is never kept."""
    return hashlib.sha256(token.encode()).hexdigest()


def validate_user_name(name: str) -> str:
    """Return `name` if it is a valid user name, else raise UsageError."""
    if not isinstance(name, str) or not USER_NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid user name {name!r}",
            hint="use 1-64 characters of lower-case letters, digits, '.', '_' or '-'",
        )
    return name


def create_user(client: redis.Redis, keys: Keys, name: str, roles: list[str]) -> User:
    """Create a user with `roles`; UsageError if the name is invalid or already taken."""
    validate_user_name(name)
    for role in roles:
        if not isinstance(role, str) or not ROLE_NAME_RE.fullmatch(role):
            raise UsageError(
                f"invalid role name {role!r}", hint="use 1-64 characters of [a-z0-9._-]"
            )
    # SADD is the atomic claim on the name: of two concurrent creators only one gets 1.
    if not client.sadd(keys.users, name):
        raise UsageError(f"user {name!r} already exists")
    user = User(name=name, roles=sorted(set(roles)), created_at=float(clock.now()))
    client.hset(
        keys.user(name),
        mapping={
            "name": user.name,
            "roles": json.dumps(user.roles),
            "created_at": repr(user.created_at),
        },
    )
    return user


def get_user(client: redis.Redis, keys: Keys, name: str) -> User:
    """The user called `name`; NotFoundError if there is none."""
    raw = client.hgetall(keys.user(name)) if USER_NAME_RE.fullmatch(name or "") else {}
    if not raw:
        raise NotFoundError(f"no user named {name!r}", hint="list users with `lr user list`")
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return User(
        name=fields["name"],
        roles=json.loads(fields["roles"]),
        created_at=float(fields["created_at"]),
    )


def list_users(client: redis.Redis, keys: Keys) -> list[User]:
    """Every user, by name."""
    names = sorted(as_text(n) for n in client.smembers(keys.users))
    users = []
    for name in names:
        try:
            users.append(get_user(client, keys, name))
        except NotFoundError:
            # A name claimed by a create_user that has not written its hash yet.
            continue
    return users


def has_any_user(client: redis.Redis, keys: Keys) -> bool:
    """True once at least one user exists (before that, the first admin is being set up)."""
    return bool(client.scard(keys.users))


def issue_token(client: redis.Redis, keys: Keys, user: User | str) -> str:
    """A new API token for `user`; the plain token is returned once and never stored."""
    name = user.name if isinstance(user, User) else user
    get_user(client, keys, name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    # NX: a collision of 256-bit random tokens is not expected, but never rebind one.
    if not client.set(keys.token(hash_token(token)), name, nx=True):
        raise LiveResponseError("token collision; issue the token again")
    return token


def authenticate(client: redis.Redis, keys: Keys, token: str | None) -> User:
    """The user `token` belongs to; AuthenticationError if missing, malformed, unknown, revoked."""
    if not token:
        raise AuthenticationError("no API token given", hint=TOKEN_HINT)
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token.strip()):
        # The message never echoes the token: it may be a real secret pasted in the wrong place.
        raise AuthenticationError(
            f"malformed API token (expected '{TOKEN_PREFIX}' followed by 43 characters)",
            hint=TOKEN_HINT,
        )
    name = client.get(keys.token(hash_token(token.strip())))
    if name is None:
        raise AuthenticationError("unknown API token (never issued, or revoked)", hint=TOKEN_HINT)
    try:
        return get_user(client, keys, as_text(name))
    except NotFoundError:
        raise AuthenticationError(
            "the API token's user no longer exists", hint=TOKEN_HINT
        ) from None


def revoke_token(client: redis.Redis, keys: Keys, token: str) -> bool:
    """Make `token` unusable from now on; True if it was valid until now."""
    if not token:
        return False
    return bool(client.delete(keys.token(hash_token(token.strip()))))
