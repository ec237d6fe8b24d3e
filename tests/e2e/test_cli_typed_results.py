"""`lr` shows results parsed into their command's model: JSON as the API stored it, and a result
that does not fit said plainly, with its own exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import InvalidResultError
from tests.e2e.cli import Lr, ok
from tests.stack import Stack

pytestmark = pytest.mark.integration


def _session(lr: Lr, device_id: str) -> str:
    return str(json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"])


def _stored_result(stack: Stack, command_id: str) -> Any:
    raw = stack.plane.client.hget(stack.plane.keys.command(command_id), "result")
    assert isinstance(raw, bytes)
    return json.loads(raw)


def _one_file(tmp_path: Path) -> Path:
    """A directory of its own (the stack's logs live in tmp_path) holding seen.txt."""
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "seen.txt").write_text("x")
    return folder


def test_json_output_is_the_record_as_stored(lr: Lr, stack: Stack, device_id: str,
                                             tmp_path: Path) -> None:
    session = _session(lr, device_id)
    record = json.loads(ok(lr("--json", "run", session, f"dir {_one_file(tmp_path)}")).stdout)
    assert record["result"] == _stored_result(stack, record["command_id"])
    assert [e["name"] for e in record["result"]["entries"]] == ["seen.txt"]


def test_fg_of_a_job_whose_result_does_not_fit_says_so(lr: Lr, stack: Stack, device_id: str,
                                                       tmp_path: Path) -> None:
    session = _session(lr, device_id)
    started = json.loads(ok(lr("--json", "run", session, f"dir {_one_file(tmp_path)} &")).stdout)
    assert "seen.txt" in ok(lr("fg", session, "1")).stdout
    result = _stored_result(stack, started["command_id"])
    result["entries"][0]["size_bytes"] = "lots"
    stack.plane.client.hset(stack.plane.keys.command(started["command_id"]), "result",
                            json.dumps(result))

    shown = lr("fg", session, "1")
    assert shown.exit_code == InvalidResultError.exit_code == 15
    assert shown.stdout == ""
    assert shown.stderr.startswith(
        "lr: the dir result does not fit DirResult: entries.0.size_bytes: ")
    as_json = lr("--json", "fg", session, "1")
    assert as_json.exit_code == 15
    record = json.loads(as_json.stdout)
    assert record["status"] == "completed" and record["result"] is None
    assert record["error"]["code"] == "invalid_result"
