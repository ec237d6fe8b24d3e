"""Users and tokens against a real Redis: tokens are kept hashed and every bad token is refused."""

from __future__ import annotations

import pytest
import redis

from orchestrator.state.identity import (
    User,
    authenticate,
    create_user,
    get_user,
    has_any_user,
    hash_token,
    issue_token,
    list_users,
    revoke_token,
)
from tasks.errors import AuthenticationError, NotFoundError, UsageError
from tasks.keys import Keys
from tests.redis_dump import dump_prefix

pytestmark = pytest.mark.integration


def test_token_is_stored_only_as_its_hash(
    redis_client: redis.Redis, keys: Keys, key_prefix: str
) -> None:
    alice = create_user(redis_client, keys, "alice", ["responder"])
    token = issue_token(redis_client, keys, alice)
    assert token.startswith("lr_") and len(token) == 46
    stored = dump_prefix(redis_client, key_prefix)
    assert token.encode() not in stored
    assert token[3:].encode() not in stored
    assert redis_client.get(keys.token(hash_token(token))) == b"alice"


def test_authenticate_returns_the_tokens_user(redis_client: redis.Redis, keys: Keys) -> None:
    create_user(redis_client, keys, "alice", ["responder", "viewer"])
    token = issue_token(redis_client, keys, "alice")
    user = authenticate(redis_client, keys, token)
    assert user.name == "alice"
    assert user.roles == ["responder", "viewer"]


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_refused_with_a_hint(
    redis_client: redis.Redis, keys: Keys, token: str | None
) -> None:
    with pytest.raises(AuthenticationError, match="no API token") as err:
        authenticate(redis_client, keys, token)
    assert err.value.hint is not None
    assert "LR_TOKEN" in err.value.hint and "--token" in err.value.hint


@pytest.mark.parametrize("token", ["hunter2", "lr_short", "xx_" + "a" * 43, "lr_" + "a!" * 22])
def test_malformed_token_is_refused_without_echoing_it(
    redis_client: redis.Redis, keys: Keys, token: str
) -> None:
    with pytest.raises(AuthenticationError, match="malformed") as err:
        authenticate(redis_client, keys, token)
    assert token not in err.value.message


def test_unknown_token_is_refused(redis_client: redis.Redis, keys: Keys) -> None:
    create_user(redis_client, keys, "alice", ["responder"])
    with pytest.raises(AuthenticationError, match="unknown"):
        authenticate(redis_client, keys, "lr_" + "A" * 43)


def test_revoked_token_is_refused_and_others_still_work(
    redis_client: redis.Redis, keys: Keys
) -> None:
    create_user(redis_client, keys, "alice", ["responder"])
    old = issue_token(redis_client, keys, "alice")
    new = issue_token(redis_client, keys, "alice")
    assert revoke_token(redis_client, keys, old) is True
    assert revoke_token(redis_client, keys, old) is False
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(redis_client, keys, old)
    assert authenticate(redis_client, keys, new).name == "alice"


def test_users_are_listed_and_looked_up(redis_client: redis.Redis, keys: Keys) -> None:
    assert has_any_user(redis_client, keys) is False
    create_user(redis_client, keys, "bob", ["viewer"])
    create_user(redis_client, keys, "alice", ["admin"])
    assert has_any_user(redis_client, keys) is True
    assert [u.name for u in list_users(redis_client, keys)] == ["alice", "bob"]
    bob = get_user(redis_client, keys, "bob")
    assert isinstance(bob, User) and bob.roles == ["viewer"] and bob.created_at > 0
    with pytest.raises(NotFoundError):
        get_user(redis_client, keys, "carol")


@pytest.mark.parametrize("name", ["", "Alice", "a b", "a:b", "x" * 65, "élise"])
def test_invalid_user_names_are_refused(redis_client: redis.Redis, keys: Keys, name: str) -> None:
    with pytest.raises(UsageError):
        create_user(redis_client, keys, name, ["viewer"])
    assert has_any_user(redis_client, keys) is False


def test_a_user_name_is_taken_once(redis_client: redis.Redis, keys: Keys) -> None:
    create_user(redis_client, keys, "alice", ["viewer"])
    with pytest.raises(UsageError, match="already exists"):
        create_user(redis_client, keys, "alice", ["admin"])
    assert get_user(redis_client, keys, "alice").roles == ["viewer"]


def test_tokens_are_issued_only_for_existing_users(redis_client: redis.Redis, keys: Keys) -> None:
    with pytest.raises(NotFoundError):
        issue_token(redis_client, keys, "ghost")
