"""A live stack shared by one test module: API plus two real agents, on a prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from orchestrator.cleanup import delete_matching
from tasks.signing import KeyPair
from tests.stack import Stack, live_stack, new_device_id


@pytest.fixture(scope="module")
def stack(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair
) -> Iterator[Stack]:
    """API + agents for devices `a` and `b` (ids in `stack.agents`), cleaned up afterwards."""
    prefix = f"lrtest-{uuid.uuid4().hex[:10]}"
    devices = [new_device_id("a"), new_device_id("b")]
    try:
        with live_stack(redis_url, prefix, devices, tmp_path_factory.mktemp("agents"),
                        signing=signing_keys, command_expiry_s=3.0) as st:
            yield st
    finally:
        delete_matching(redis.Redis.from_url(redis_url), f"{prefix}:*")


@pytest.fixture(scope="module")
def device_a(stack: Stack) -> str:
    return list(stack.agents)[0]


@pytest.fixture(scope="module")
def device_b(stack: Stack) -> str:
    return list(stack.agents)[1]


@pytest.fixture
def session_a(stack: Stack, device_a: str) -> str:
    """A fresh session on device a."""
    return stack.open_session(device_a)
