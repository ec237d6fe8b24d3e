"""A live stack shared by one test module: API plus two real agents, on a prefix of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.signing import KeyPair
from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture(scope="module")
def stack(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair
) -> Iterator[Stack]:
    """API + agents for devices `a` and `b` (ids in `stack.agents`), cleaned up afterwards."""
    devices = [new_device_id("a"), new_device_id("b")]
    with own_prefix_stack(redis_url, devices, tmp_path_factory.mktemp("agents"),
                          signing=signing_keys, command_expiry_s=3.0) as st:
        yield st


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
