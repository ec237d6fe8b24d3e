"""Fixtures every tier shares: a real Redis (LR_REDIS_URL or an embedded one) and key prefixes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config import EmbeddedRedis
from orchestrator.local.cleanup import delete_matching
from tasks.keys import Keys
from tasks.signing import KeyPair, generate_keypair


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis every test talks to: the server at LR_REDIS_URL, else a private embedded one."""
    url = os.environ.get("LR_REDIS_URL")
    if url:
        redis.Redis.from_url(url).ping()
        yield url
        return
    # Unix socket paths are limited to ~100 bytes: keep the directory short.
    data_dir = Path("/tmp") / f"lr-test-{uuid.uuid4().hex[:8]}"
    server = EmbeddedRedis(data_dir).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    """A client of the test Redis."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"lrtest-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_matching(redis_client, f"{prefix}:*")


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    """Key names under this test's prefix."""
    return Keys(key_prefix)


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The orchestrator's signing key pair for this test run; agents trust its public key."""
    return generate_keypair(tmp_path_factory.mktemp("signing") / "keys")


@pytest.fixture
def stack_factory(  # type: ignore[no-untyped-def]
    redis_url: str, key_prefix: str, tmp_path: Path, signing_keys: KeyPair
):
    """Start a live stack (API + real agents) on this test's prefix: `with stack_factory([d])`."""
    from tests.stack import live_stack

    def factory(devices: list[str], **settings: object):  # type: ignore[no-untyped-def]
        return live_stack(redis_url, key_prefix, devices, tmp_path, signing=signing_keys,
                          **settings)

    return factory
