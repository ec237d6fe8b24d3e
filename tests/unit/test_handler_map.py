"""The agent's handler map covers the registry exactly, with matching models; a handler is
imported only when its command first runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.commands.filesystem import DirArgs, DirResult
from tasks.registry import REGISTRY, CommandSpec, Registry
from worker_agent.context import CommandContext
from worker_agent.handlers import HANDLERS, HandlerTable, check_handlers


def test_every_registry_command_has_a_matching_handler() -> None:
    check_handlers(REGISTRY)
    assert set(HANDLERS) == set(REGISTRY)


def test_registry_command_without_handler_is_refused() -> None:
    handlers = {name: h for name, h in HANDLERS.items() if name != "kill"}
    with pytest.raises(ValueError, match="without a handler.*kill"):
        check_handlers(REGISTRY, handlers)
    with pytest.raises(ValueError, match="without a handler.*kill"):
        HandlerTable(REGISTRY, handlers)


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
    table = HandlerTable(Registry([spec]), {"cd": run_wrong})  # names match: checked on use
    with pytest.raises(ValueError, match="'cd' takes"):
        table["cd"]


def test_a_handler_module_is_imported_when_its_command_is_first_looked_up() -> None:
    # In a fresh interpreter: nothing else of this test run has imported the modules.
    probe = (
        "import sys\n"
        "from tasks.registry import REGISTRY\n"
        "from worker_agent.handlers import HandlerTable\n"
        "table = HandlerTable(REGISTRY)\n"
        "before = {m for m in ('worker_agent.processes', 'worker_agent.scripts') "
        "if m in sys.modules}\n"
        "handler = table['processes']\n"
        "print(sorted(before), handler.__name__, 'worker_agent.processes' in sys.modules,"
        " 'worker_agent.scripts' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["[]", "run_processes", "True", "False"]
