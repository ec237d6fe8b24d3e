"""The orchestrator's command table covers the registry exactly, with matching models, and the
CLI that renders from it starts without the server's side."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.cli.render import render_record
from orchestrator.cli.render_results import render_cd, render_dir
from orchestrator.commands.effects import record_isolation, set_session_cwd
from orchestrator.commands.table import COMMAND_TABLE, CommandSide, check_command_table
from orchestrator.files.library import prepare_library_args
from orchestrator.files.transfer import prepare_getfile
from tasks.registry import REGISTRY, Registry


def test_every_registry_command_has_a_matching_side() -> None:
    check_command_table(REGISTRY)
    assert set(COMMAND_TABLE) == set(REGISTRY)


def test_a_command_without_an_entry_is_refused() -> None:
    table = {name: side for name, side in COMMAND_TABLE.items() if name != "kill"}
    with pytest.raises(ValueError, match=r"without an entry.*\['kill'\]"):
        check_command_table(REGISTRY, table)


def test_an_entry_for_a_command_the_registry_does_not_know_is_refused() -> None:
    smaller = Registry(spec for spec in REGISTRY.values() if spec.name != "netstat")
    with pytest.raises(ValueError, match=r"does not know.*\['netstat'\]"):
        check_command_table(smaller)


def test_a_renderer_of_another_result_model_is_refused() -> None:
    only_cd = Registry([REGISTRY["cd"]])
    check_command_table(only_cd, {"cd": CommandSide(render=render_cd, after=set_session_cwd)})
    with pytest.raises(ValueError, match=r"'cd': its renderer takes .*DirResult.*CdResult"):
        check_command_table(only_cd, {"cd": CommandSide(render=render_dir)})


def test_an_after_effect_of_another_result_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'cd': its after-effect takes .*IsolateResult"):
        check_command_table(Registry([REGISTRY["cd"]]),
                            {"cd": CommandSide(render=render_cd, after=record_isolation)})


def test_a_preparer_of_another_argument_model_is_refused() -> None:
    getfile = Registry([REGISTRY["getfile"]])
    side = COMMAND_TABLE["getfile"]
    check_command_table(getfile, {"getfile": CommandSide(side.render, prepare=prepare_getfile)})
    with pytest.raises(ValueError, match=r"'getfile': its preparer takes .*LibraryFileArgs"):
        check_command_table(getfile, {"getfile": CommandSide(side.render,
                                                             prepare=prepare_library_args)})


def test_rendering_refuses_a_table_that_misses_a_command(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    record = {"command": "cd", "status": "completed", "result": {"cwd": "/tmp"}}
    assert render_record(record) == "/tmp"
    monkeypatch.delitem(COMMAND_TABLE, "kill")
    with pytest.raises(ValueError, match=r"without an entry.*\['kill'\]"):
        render_record(record)


def test_the_cli_starts_without_the_server_side() -> None:
    heavy = ["fastapi", "uvicorn", "celery", "orchestrator.plane", "orchestrator.commands.dispatch"]
    code = ("import sys, orchestrator.cli.main, orchestrator.cli.render; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
