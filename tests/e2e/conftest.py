"""Fixtures of the CLI tests: a live stack with one agent, and `lr` bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.main import main
from tests.e2e.cli import Lr, cli_env
from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture
def device_id() -> str:
    return new_device_id("cli")


@pytest.fixture
def stack(stack_factory, device_id: str) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """API + one agent, stopped when the test ends, failed or not."""
    with stack_factory([device_id]) as st:
        yield st


@pytest.fixture
def lr(stack: Stack, tmp_path: Path) -> Lr:
    """Run `lr` against the stack as its admin (or `token=`), isolated from the user's env."""
    runner = CliRunner()

    def invoke(*args: str, token: str | None = None, input: str | None = None) -> Result:
        argv = ["--api-url", stack.url, "--token", token or stack.token, *args]
        return runner.invoke(main, argv, input=input, env=cli_env(tmp_path))

    return invoke


@pytest.fixture
def env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str | None]:
    """`lr` talking to the test Redis directly (bootstrap commands), under this test's prefix,
    with a data directory of its own and none of the user's LR_* settings."""
    return {
        "LR_REDIS_URL": redis_url,
        "LR_KEY_PREFIX": key_prefix,
        "LR_DATA_DIR": str(tmp_path / "lr-home"),
        "LR_SIGNING_KEY_FILE": None,
        "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": None,
        "LR_API_URL": None,
        "LR_TOKEN": None,
    }


@pytest.fixture(scope="module")
def shared_device_id() -> str:
    return new_device_id("cli")


@pytest.fixture(scope="module")
def shared_stack(redis_url: str, shared_device_id: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API + one agent for all the tests of a module (on a key prefix of its own, deleted
    afterwards): for tests that each open sessions of their own and leave the device as they
    found it. A module uses it by defining `stack` and `device_id` as these two."""
    with own_prefix_stack(redis_url, [shared_device_id],
                          tmp_path_factory.mktemp("shared-stack")) as st:
        yield st
