"""Fixtures of the CLI tests: a live stack with one agent, and `lr` bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.main import main
from tests.e2e.cli import Lr, cli_env
from tests.stack import Stack, new_device_id


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
