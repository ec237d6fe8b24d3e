"""The agent's handler map covers the registry exactly, with matching models."""

from __future__ import annotations

import pytest

from tasks.commands.filesystem import DirArgs, DirResult
from tasks.registry import REGISTRY, CommandSpec, Registry
from worker_agent.context import CommandContext
from worker_agent.handlers import HANDLERS, check_handlers


def test_every_registry_command_has_a_matching_handler() -> None:
    check_handlers(REGISTRY)
    assert set(HANDLERS) == set(REGISTRY)


def test_registry_command_without_handler_is_refused() -> None:
    handlers = {name: h for name, h in HANDLERS.items() if name != "kill"}
    with pytest.raises(ValueError, match="without a handler.*kill"):
        check_handlers(REGISTRY, handlers)


def test_handler_for_unknown_command_is_refused() -> None:
    smaller = Registry(spec for spec in REGISTRY.values() if spec.name != "netstat")
    with pytest.raises(ValueError, match="does not know.*netstat"):
        check_handlers(smaller)


def test_handler_with_the_wrong_argument_model_is_refused() -> None:
    def run_wrong(args: DirArgs, ctx: CommandContext) -> DirResult:
        raise AssertionError("never called")

    spec: CommandSpec = REGISTRY["cd"]
    with pytest.raises(ValueError, match="'cd' takes"):
        check_handlers(Registry([spec]), {"cd": run_wrong})
