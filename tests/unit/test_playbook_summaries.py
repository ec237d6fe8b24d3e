"""The one-line summaries `lr playbook show` gives of a step's result."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.commands.records import CommandRecord
from orchestrator.playbooks.summary import summarize
from tasks.envelope import CommandStatus

SHA = "ef" * 32


@pytest.mark.parametrize("command, result, summary", [
    ("collect", {"members": [{}, {}], "size_bytes": 10240, "sha256": "x", "evidence_sha256": SHA},
     f"archived 2 entries, 10240 bytes, sha256 {SHA}"),
    ("memdump", {"regions": [{}], "size_bytes": 4096, "sha256": SHA},
     f"dumped 1 regions, 4096 bytes, sha256 {SHA}"),
    ("history", {"files": [{}, {}, {}]}, "3 history files"),
    ("env", {"variables": []}, "0 variables"),
])
def test_evidence_and_system_commands_are_summarized(command: str, result: dict[str, Any],
                                                     summary: str) -> None:
    record = CommandRecord(command_id="c1", session_id="S1", device_id="d", user="u",
                           command=command, line=command, args={},
                           status=CommandStatus.COMPLETED, created_at=0.0, result=result)
    assert summarize(record) == summary
