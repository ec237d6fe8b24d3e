"""The wire contract: queue naming, the registry's own checks, line parsing, result truncation."""

from __future__ import annotations

import pytest

from tasks.commands.filesystem import DirArgs, DirResult, FileInfoArgs
from tasks.errors import InvalidDeviceIdError, UnknownCommandError, UsageError
from tasks.parsing import parse_line
from tasks.queues import queue_for
from tasks.registry import REGISTRY, CommandSpec, Registry
from worker_agent.limits import json_size, truncate_result


@pytest.mark.parametrize("device", ["web01", "FINANCE-LAP01", "a.b_c-d", "x" * 64])
def test_queue_for_accepts_well_formed_ids(device: str) -> None:
    assert queue_for(device) == f"lr.device.{device}"


@pytest.mark.parametrize("device", ["", "x" * 65, "../etc", "a b", "dev*", "dev:1", "é"])
def test_queue_for_rejects_malformed_ids(device: str) -> None:
    with pytest.raises(InvalidDeviceIdError):
        queue_for(device)


def test_every_command_has_a_task_name_and_usage() -> None:
    for name, spec in REGISTRY.items():
        assert spec.task_name == f"lr.command.{name}"
        assert spec.usage.startswith(name)


def test_registry_refuses_a_line_naming_an_unknown_field() -> None:
    bad = CommandSpec("dir", "x", DirArgs, DirResult, "live.read", positionals=("nope",))
    with pytest.raises(ValueError, match="unknown fields"):
        Registry([bad])


def test_registry_refuses_a_command_declared_twice() -> None:
    spec = REGISTRY["dir"]
    with pytest.raises(ValueError, match="declared twice"):
        Registry([spec, spec])


def test_registry_refuses_a_file_sender_whose_result_lacks_the_evidence_fields() -> None:
    bad = CommandSpec("dir", "x", DirArgs, DirResult, "live.read", sends_file=True)
    with pytest.raises(ValueError, match="lacks .'evidence_sha256'"):
        Registry([bad])


def test_registry_refuses_a_required_field_missing_from_the_line() -> None:
    bad = CommandSpec("fileinfo", "x", FileInfoArgs, DirResult, "live.read")
    with pytest.raises(ValueError, match="required fields"):
        Registry([bad])


def test_parse_line_fills_positionals_options_and_flags() -> None:
    spec, args = parse_line("findfile '*.exe' --path '/home/alice/My Downloads' --max=5")
    assert spec.name == "findfile"
    assert args.model_dump(exclude_none=True) == {
        "name": "*.exe", "path": "/home/alice/My Downloads", "max": 5}
    _, procs = parse_line("processes --tree")
    assert procs.model_dump() == {"pid": None, "tree": True, "open_path": None}
    _, holding = parse_line("processes --open /tmp/x")
    assert holding.model_dump()["open_path"] == "/tmp/x"


@pytest.mark.parametrize(("line", "problem"), [
    ("kill", "missing PID"),
    ("kill 12 13", "unexpected argument"),
    ("kill twelve", "bad value for pid"),
    ("getfilehash /x --algo crc32", "bad value for algo"),
    ("processes --tree=yes", "takes no value"),
    ("findfile x --max", "needs a value"),
    ("findfile x --max 0", "bad value for max"),
    ("dir --recursive", "unknown option"),
    ("dir 'unclosed", "cannot parse"),
])
def test_bad_lines_name_the_problem_and_show_the_usage(line: str, problem: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_line(line)
    assert problem in info.value.message
    if "cannot parse" not in problem:
        assert info.value.hint and info.value.hint.startswith("usage: ")


def test_unknown_command_lists_the_known_ones() -> None:
    with pytest.raises(UnknownCommandError) as info:
        parse_line("format c:")
    assert "getfilehash" in (info.value.hint or "")


def test_shell_metacharacters_stay_plain_arguments() -> None:
    _, args = parse_line("dir '/tmp; rm -rf /'")
    assert args.model_dump() == {"path": "/tmp; rm -rf /"}


def test_truncate_result_cuts_the_longest_list_to_fit() -> None:
    result = {"path": "/", "entries": [{"name": f"f{i:05d}"} for i in range(5000)], "n": 1}
    cut, truncated = truncate_result(result, 10_000)
    assert truncated
    assert json_size(cut) <= 10_000
    assert cut["entries"] == result["entries"][: len(cut["entries"])]
    assert len(cut["entries"]) > 100
    same, untouched = truncate_result({"a": [1, 2]}, 10_000)
    assert not untouched and same == {"a": [1, 2]}
