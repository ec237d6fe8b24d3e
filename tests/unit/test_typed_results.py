"""A record's result is served as its command's result model, or withheld as `invalid_result`;
the CLI parses it once into that model, and says so when it does not fit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.cli.errors import record_error
from orchestrator.cli.render import parse_result, render_record
from orchestrator.commands.records import CommandRecord, served_record, typed_result
from tasks.commands.base import CommandResult
from tasks.commands.filesystem import DirEntry, DirResult, FindFileResult, FoundFile
from tasks.commands.network import Connection, NetstatResult
from tasks.commands.processes import ProcessesResult, ProcessInfo
from tasks.envelope import CommandStatus, ErrorInfo
from tasks.errors import InvalidResultError
from worker_agent.limits import truncate_result


def _entry(i: int) -> DirEntry:
    return DirEntry(name=f"file-{i:05}", type="file", size_bytes=i, mode="-rw-r--r--",
                    owner="root", group="root", mtime=1_700_000_000.0 + i)


def _dir_result(entries: int = 3) -> dict[str, Any]:
    return DirResult(path="/tmp", entries=[_entry(i) for i in range(entries)]).model_dump(
        mode="json")


def _record(result: dict[str, Any] | None, command: str = "dir",
            status: CommandStatus = CommandStatus.COMPLETED,
            error: ErrorInfo | None = None) -> CommandRecord:
    return CommandRecord(command_id="c1", session_id="S1", device_id="d1", user="alice",
                         command=command, line=command, status=status, result=result,
                         error=error, created_at=1.0)


def _bad_size(result: dict[str, Any]) -> dict[str, Any]:
    entries = [dict(e) for e in result["entries"]]
    entries[1]["size_bytes"] = "twelve"
    return {**result, "entries": entries}


def test_a_valid_result_is_served_as_it_was_stored() -> None:
    record = _record(_dir_result())
    assert isinstance(typed_result(record), DirResult)
    served = served_record(record)
    assert served.result == record.result and served.error is None
    assert json.loads(served.model_dump_json()) == json.loads(record.model_dump_json())


def test_a_result_that_does_not_fit_is_withheld_as_invalid_result() -> None:
    record = _record(_bad_size(_dir_result()))
    with pytest.raises(InvalidResultError, match=r"DirResult: entries\.1\.size_bytes"):
        typed_result(record)
    served = served_record(record)
    assert served.status is CommandStatus.COMPLETED
    assert served.result is None
    assert served.error is not None and served.error.code == "invalid_result"
    assert "the dir result does not fit DirResult: entries.1.size_bytes:" in served.error.message


def test_a_result_with_a_field_the_model_does_not_have_is_withheld() -> None:
    served = served_record(_record({**_dir_result(), "owner_sid": "S-1-5-18"}))
    assert served.result is None and served.error is not None
    assert "DirResult: owner_sid: Extra inputs are not permitted" in served.error.message


def test_withholding_a_result_keeps_what_the_command_reported() -> None:
    failed = _record({"path": "/x"}, command="getfile", status=CommandStatus.FAILED,
                     error=ErrorInfo(code="hash_mismatch", message="sha256 differs"))
    served = served_record(failed)
    assert served.status is CommandStatus.FAILED and served.result is None
    assert served.error is not None and served.error.code == "invalid_result"
    assert "GetFileResult" in served.error.message
    assert served.error.message.endswith("also reported hash_mismatch: sha256 differs")


def test_a_record_without_a_result_is_served_unchanged() -> None:
    queued = _record(None, status=CommandStatus.QUEUED)
    assert typed_result(queued) is None
    assert served_record(queued) == queued


def test_a_result_of_a_command_the_orchestrator_does_not_know_is_withheld() -> None:
    served = served_record(_record({"a": 1}, command="frobnicate"))
    assert served.result is None and served.error is not None
    assert "'frobnicate' is not a command this orchestrator knows" in served.error.message


def _processes(n: int) -> ProcessesResult:
    return ProcessesResult(processes=[
        ProcessInfo(pid=i, ppid=1, name=f"p{i}", user="root", cmdline=[f"/bin/p{i}", "-x"],
                    exe=None, started_at=1.0, cpu_percent=None, rss_bytes=4096,
                    open_files=None, connections=None, status="S") for i in range(n)])


def _netstat(n: int) -> NetstatResult:
    return NetstatResult(connections=[
        Connection(proto="tcp", local_address="10.0.0.1", local_port=i, remote_address=None,
                   remote_port=None, state="LISTEN", pid=i, process_name="x") for i in range(n)])


def _findfile(n: int) -> FindFileResult:
    return FindFileResult(root="/", pattern="*", matches=[
        FoundFile(path=f"/f{i}", type="file", size_bytes=i, mtime=0.0) for i in range(n)])


@pytest.mark.parametrize(("command", "result"), [
    ("dir", DirResult(path="/big", entries=[_entry(i) for i in range(3000)])),
    ("processes", _processes(2000)),
    ("netstat", _netstat(2000)),
    ("findfile", _findfile(2000)),
])
def test_a_result_the_agent_cut_to_its_limit_still_fits_its_model(
        command: str, result: CommandResult) -> None:
    cut, truncated = truncate_result(result.model_dump(mode="json"), 20_000)
    assert truncated
    record = _record(cut, command=command).model_copy(update={"truncated": True})
    assert type(typed_result(record)) is type(result)
    served = served_record(record)
    assert served.error is None and served.result == cut


def _wire(record: CommandRecord) -> dict[str, Any]:
    """The record as the CLI receives it: the API's JSON."""
    return dict(json.loads(served_record(record).model_dump_json()))


def test_the_cli_parses_a_result_once_into_its_model() -> None:
    parsed = parse_result(_wire(_record(_dir_result())))
    assert isinstance(parsed, DirResult) and parsed.entries[2].name == "file-00002"
    assert parse_result({"command": "frobnicate", "result": {"a": 1}}) is None


def test_the_cli_shows_a_withheld_result_as_its_error_with_its_exit_code() -> None:
    wire = _wire(_record(_bad_size(_dir_result())))
    assert wire["status"] == "completed" and wire["result"] is None
    error = record_error(wire)
    assert isinstance(error, InvalidResultError) and error.exit_code == 15
    assert render_record(wire).startswith(
        "the dir result does not fit DirResult: entries.1.size_bytes:")


def test_the_cli_refuses_a_result_that_does_not_fit_its_own_model() -> None:
    # An orchestrator of another version served it: the CLI checks with its own registry.
    raw = {"command": "dir", "status": "completed", "result": _bad_size(_dir_result())}
    with pytest.raises(InvalidResultError, match=r"DirResult: entries\.1\.size_bytes"):
        render_record(raw)


def test_the_cli_says_when_a_completed_record_carries_no_result() -> None:
    with pytest.raises(InvalidResultError, match="dir completed without a result"):
        render_record({"command": "dir", "status": "completed", "result": None})


def test_the_cli_shows_the_result_of_a_command_it_does_not_know_as_json() -> None:
    record = {"command": "frobnicate", "status": "completed", "result": {"b": [1], "a": "x"}}
    assert render_record(record).splitlines() == [
        "{", '  "a": "x",', '  "b": [', "    1", "  ]", "}"]
