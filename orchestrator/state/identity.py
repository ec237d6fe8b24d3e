"""Users and their API tokens in Redis; tokens are kept only as sha256 digests."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime

import redis
from pydantic import BaseModel, ConfigDict

from orchestrator.policies.model import NAME_RE, TAG_RE, Grant
from orchestrator.state.reads import Reader
from tasks import clock
from tasks.errors import AuthenticationError, LiveResponseError, NotFoundError, UsageError
from tasks.keys import Keys
from tasks.replies import as_text

#: What a user name may look like: it becomes part of key names and audit entries.
USER_NAME_RE = re.compile(r"[a-z0-9._-]{1,64}")
#: What a role name may look like (the policy gives roles their meaning).
ROLE_NAME_RE = NAME_RE
#: Every token starts with this, so a pasted token is recognisable (and scannable in leaks).
TOKEN_PREFIX = "lr_"
#: A well-formed token: the prefix and 43 url-safe characters (`secrets.token_urlsafe(32)`).
TOKEN_RE = re.compile(r"lr_[A-Za-z0-9_-]{43}")
#: Longest lifetime a token may be given (a year).
MAX_TOKEN_TTL_S = 366 * 24 * 3600
#: How long an expired token is remembered, so its use is answered "expired", not "unknown".
EXPIRED_TOKEN_GRACE_S = 30 * 24 * 3600
#: What every authentication failure tells the user to do.
TOKEN_HINT = "pass a token with LR_TOKEN or --token"


class User(BaseModel):
    """A person or a playbook that may call the orchestrator."""

    model_config = ConfigDict(frozen=True)

    name: str
    grants: list[Grant]
    created_at: float

    @property
    def roles(self) -> list[str]:
        """The names of the roles held, on any scope."""
        return sorted({g.role for g in self.grants})


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


def validate_grant(grant: Grant) -> Grant:
    """Return `grant` if its role and scope are well-formed, else raise UsageError."""
    if not ROLE_NAME_RE.fullmatch(grant.role):
        raise UsageError(f"invalid role name {grant.role!r}",
                         hint="use 1-64 characters of [a-z0-9._-]")
    if grant.scope is not None and not TAG_RE.fullmatch(grant.scope):
        raise UsageError(f"invalid scope {grant.scope!r}",
                         hint="a scope is a device tag such as group:finance")
    return grant


def create_user(client: redis.Redis, keys: Keys, name: str, roles: list[str] | None = None,
                *, grants: list[Grant] | None = None) -> User:
    """Create a user holding `roles` everywhere plus `grants`; UsageError if invalid or taken."""
    validate_user_name(name)
    wanted = [Grant(role=r) for r in roles or []] + list(grants or [])
    for grant in wanted:
        validate_grant(grant)
    # SADD is the atomic claim on the name: of two concurrent creators only one gets 1.
    if not client.sadd(keys.users, name):
        raise UsageError(f"user {name!r} already exists",
                         hint="add a role to an existing user with `lr admin user grant`")
    user = User(name=name, grants=_unique(wanted), created_at=float(clock.now()))
    client.hset(keys.user(name), mapping={
        "name": user.name,
        "grants": _grants_json(user.grants),
        "created_at": repr(user.created_at),
    })
    return user


def set_grants(client: redis.Redis, keys: Keys, name: str, grants: list[Grant]) -> User:
    """Replace the grants of the existing user `name`."""
    user = get_user(client, keys, name)
    for grant in grants:
        validate_grant(grant)
    client.hset(keys.user(name), "grants", _grants_json(_unique(grants)))
    return user.model_copy(update={"grants": _unique(grants)})


def _unique(grants: list[Grant]) -> list[Grant]:
    return sorted(set(grants), key=lambda g: (g.role, g.scope or ""))


def _grants_json(grants: list[Grant]) -> str:
    return json.dumps([g.model_dump() for g in grants])


def get_user(client: Reader, keys: Keys, name: str) -> User:
    """The user called `name`; NotFoundError if there is none."""
    raw = client.hgetall(keys.user(name)) if USER_NAME_RE.fullmatch(name or "") else {}
    if not raw:
        raise NotFoundError(f"no user named {name!r}", hint="list users with `lr user list`")
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    if "grants" in fields:
        grants = [Grant.model_validate(g) for g in json.loads(fields["grants"])]
    else:  # users written before grants existed held their roles everywhere
        grants = [Grant(role=r) for r in json.loads(fields.get("roles", "[]"))]
    return User(name=fields["name"], grants=grants, created_at=float(fields["created_at"]))


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


def token_id(token: str) -> str:
    """The public name of a token: the first 12 hex digits of its hash (safe to show and log)."""
    return hash_token(token.strip())[:12]


def issue_token(client: redis.Redis, keys: Keys, user: User | str,
                ttl_s: float | None = None) -> str:
    """A new API token for `user`, valid for `ttl_s` seconds (None: until revoked).

    The plain token is returned once and never stored.
    """
    name = user.name if isinstance(user, User) else user
    get_user(client, keys, name)
    if ttl_s is not None and not 1 <= ttl_s <= MAX_TOKEN_TTL_S:
        raise UsageError(f"token lifetime {ttl_s:g} s is out of range",
                         hint=f"give 1 s to {MAX_TOKEN_TTL_S // 86400} days")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(token)
    value = name if ttl_s is None else f"{name}|{clock.now() + ttl_s!r}"
    # The key outlives the token by a grace period, so a late use hears "expired".
    key_ttl = None if ttl_s is None else int(ttl_s + EXPIRED_TOKEN_GRACE_S)
    # NX: a collision of 256-bit random tokens is not expected, but never rebind one.
    if not client.set(keys.token(digest), value, nx=True, ex=key_ttl):
        raise LiveResponseError("token collision; issue the token again")
    client.sadd(keys.user_tokens(name), digest)
    return token


def find_token(client: redis.Redis, keys: Keys, token_or_id: str) -> tuple[str, str] | None:
    """(hash, user) of a token given as the token itself or its 12-digit id; None if unknown."""
    text = (token_or_id or "").strip()
    if TOKEN_RE.fullmatch(text):
        digest = hash_token(text)
        owner = client.get(keys.token(digest))
        return (digest, _token_value(owner)[0]) if owner is not None else None
    if not re.fullmatch(r"[0-9a-f]{12}", text):
        raise UsageError(f"{_shown(text)} is neither an API token nor a token id",
                         hint="a token id is the 12 hex digits `lr admin token create` printed")
    for name in client.smembers(keys.users):
        for raw in client.smembers(keys.user_tokens(as_text(name))):
            digest = as_text(raw)
            if digest.startswith(text) and client.exists(keys.token(digest)):
                return digest, as_text(name)
    return None


def revoke_token_hash(client: redis.Redis, keys: Keys, digest: str, user: str) -> bool:
    """Make the token stored under `digest` unusable; True if it was valid until now."""
    pipe = client.pipeline()
    pipe.delete(keys.token(digest))
    pipe.srem(keys.user_tokens(user), digest)
    return bool(pipe.execute()[0])


def _token_value(value: bytes | str) -> tuple[str, float | None]:
    """(user, expires_at or None) from a stored token value `user` or `user|expires_at`."""
    name, _, expires = as_text(value).partition("|")
    return name, float(expires) if expires else None


def _shown(text: str) -> str:
    """How a rejected token-ish value is named in an error: never echoed (it may be a secret)."""
    return f"the value given ({len(text)} characters)"


def authenticate(client: Reader, keys: Keys, token: str | None) -> User:
    """The user `token` belongs to; AuthenticationError if missing, malformed, unknown, revoked.

    `client` may be a request's `Reads` (state.reads): the token and user then come from its
    one prefetching round trip, read for this request all the same.
    """
    if not token:
        raise AuthenticationError("no API token given", hint=TOKEN_HINT)
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token.strip()):
        # The message never echoes the token: it may be a real secret pasted in the wrong place.
        raise AuthenticationError(
            f"malformed API token (expected '{TOKEN_PREFIX}' followed by 43 characters)",
            hint=TOKEN_HINT,
        )
    value = client.get(keys.token(hash_token(token.strip())))
    if value is None:
        raise AuthenticationError("unknown API token (never issued, or revoked)", hint=TOKEN_HINT)
    name, expires_at = _token_value(value)
    if expires_at is not None and clock.now() >= expires_at:
        raise AuthenticationError(
            f"API token expired at {datetime.fromtimestamp(expires_at, UTC):%Y-%m-%d %H:%M} UTC",
            hint="ask an admin for a new one: lr admin token create USER")
    try:
        return get_user(client, keys, name)
    except NotFoundError:
        raise AuthenticationError(
            "the API token's user no longer exists", hint=TOKEN_HINT
        ) from None


def revoke_token(client: redis.Redis, keys: Keys, token: str) -> bool:
    """Make `token` unusable from now on; True if it was valid until now."""
    if not token or not TOKEN_RE.fullmatch(token.strip()):
        return False
    found = find_token(client, keys, token)
    return found is not None and revoke_token_hash(client, keys, *found)
