"""The API answers a command's result only as its command's result model: a stored result that
does not fit is withheld as `invalid_result`, on every route that answers a record."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api.app import create_app
from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.records import OUTCOME_CLAIM, load_record
from orchestrator.commands.table import COMMAND_TABLE
from tasks.envelope import CommandOutcome, CommandStatus
from tests.stack import Stack


def _stored_result(stack: Stack, command_id: str) -> Any:
    raw = stack.plane.client.hget(stack.plane.keys.command(command_id), "result")
    assert isinstance(raw, bytes)
    return json.loads(raw)


def _spoil(stack: Stack, command_id: str) -> None:
    """Change a stored dir result so it no longer fits DirResult (a size that is no number)."""
    result = _stored_result(stack, command_id)
    result["entries"][0]["size_bytes"] = "lots"
    stack.plane.client.hset(stack.plane.keys.command(command_id), "result", json.dumps(result))


def _assert_withheld(record: dict[str, Any]) -> None:
    assert record["status"] == "completed"
    assert record["result"] is None
    assert record["error"]["code"] == "invalid_result"
    assert record["error"]["message"].startswith(
        "the dir result does not fit DirResult: entries.0.size_bytes: ")


def _a_dir(tmp_path: Path) -> Path:
    (tmp_path / "one.txt").write_text("1")
    return tmp_path


def test_a_valid_result_is_answered_as_it_is_stored(stack: Stack, session_a: str,
                                                    tmp_path: Path) -> None:
    done = stack.run(session_a, f"dir {_a_dir(tmp_path)}")
    assert done["status"] == "completed"
    assert done["result"] == _stored_result(stack, done["command_id"])
    with stack.client() as http:
        again = http.get(f"/commands/{done['command_id']}").json()
    assert again == done


def test_a_stored_result_that_does_not_fit_is_answered_as_invalid_result(
        stack: Stack, session_a: str, tmp_path: Path) -> None:
    done = stack.run(session_a, f"dir {_a_dir(tmp_path)}")
    _spoil(stack, done["command_id"])
    with stack.client() as http:
        resp = http.get(f"/commands/{done['command_id']}")
    assert resp.status_code == 200
    _assert_withheld(resp.json())
    # The stored record keeps what arrived; only the answer withholds it.
    assert _stored_result(stack, done["command_id"])["entries"][0]["size_bytes"] == "lots"


def test_the_job_routes_withhold_a_result_that_does_not_fit(
        stack: Stack, session_a: str, tmp_path: Path) -> None:
    with stack.client() as http:
        started = http.post(f"/sessions/{session_a}/commands",
                            json={"line": f"dir {_a_dir(tmp_path)} &"}).json()
        job = started["job"]
        deadline = time.monotonic() + 30
        # The agent moves the state first; the result is recorded just after.
        while http.get(f"/sessions/{session_a}/jobs/{job}").json()["result"] is None:
            assert time.monotonic() < deadline, "the job never completed"
            time.sleep(0.1)
        _spoil(stack, started["command_id"])
        _assert_withheld(http.get(f"/sessions/{session_a}/jobs/{job}").json())
        (listed,) = [r for r in http.get(f"/sessions/{session_a}/jobs").json()
                     if r["job"] == job]
    _assert_withheld(listed)


def test_building_the_api_checks_the_command_table(stack: Stack,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    create_app(stack.plane)
    monkeypatch.delitem(COMMAND_TABLE, "kill")
    with pytest.raises(ValueError, match=r"without an entry.*\['kill'\]"):
        create_app(stack.plane)


def test_a_cd_whose_result_does_not_fit_leaves_the_session_cwd_alone(
        stack: Stack, session_a: str, tmp_path: Path) -> None:
    cd = stack.run(session_a, f"cd {tmp_path}")
    assert stack.plane.sessions.get(session_a).cwd == str(tmp_path)
    record = load_record(stack.plane, cd["command_id"])
    spoiled = CommandOutcome(command_id=record.command_id, device_id=record.device_id,
                             command="cd", status=CommandStatus.COMPLETED,
                             result={"cwd": "/elsewhere", "drive": "C:"})
    # As if this outcome were the first to arrive: its claim not taken yet.
    stack.plane.client.hdel(stack.plane.keys.command(record.command_id), OUTCOME_CLAIM)
    Dispatcher(stack.plane).finish(record, spoiled)
    assert stack.plane.sessions.get(session_a).cwd == str(tmp_path)
    with stack.client() as http:
        answered = http.get(f"/commands/{cd['command_id']}").json()
    assert answered["error"]["code"] == "invalid_result" and "CdResult: drive" in (
        answered["error"]["message"])
