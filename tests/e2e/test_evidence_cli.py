"""`lr run … getfile`, `lr evidence list` and `lr evidence get` against a live API and agent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli import Lr, ok

pytestmark = pytest.mark.integration


def _sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _collect(lr: Lr, device_id: str, subject: Path) -> str:
    """getfile `subject` through `lr run`; the evidence sha256 it printed."""
    session_id = json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"]
    out = ok(lr("run", session_id, f"getfile {subject}")).stdout
    line = next(x for x in out.splitlines() if x.startswith("copy it with: lr evidence get "))
    return line.split()[6]


def test_getfile_then_evidence_get_writes_identical_bytes_and_never_overwrites(
    lr: Lr, device_id: str, tmp_path: Path,
) -> None:
    subject = tmp_path / "dropper.bin"
    subject.write_bytes(os.urandom(5 * 1024 * 1024 + 11))
    sha = _collect(lr, device_id, subject)
    assert sha == _sha256sum(subject)

    listing = ok(lr("evidence", "list")).stdout
    assert listing.splitlines()[0].split() == ["SHA256", "SIZE", "DEVICE", "USER", "STORED",
                                               "PATH"]
    assert any(sha in row and str(subject) in row for row in listing.splitlines())
    (entry,) = [e for e in json.loads(ok(lr("--json", "evidence", "list")).stdout)
                if e["sha256"] == sha]
    assert entry["size_bytes"] == subject.stat().st_size and entry["device_id"] == device_id

    copy = tmp_path / "out" / "copy.bin"
    copy.parent.mkdir()
    got = ok(lr("evidence", "get", sha, "--out", str(copy)))
    assert copy.read_bytes() == subject.read_bytes()
    assert f"(sha256 {sha} verified)" in got.stdout

    copy.write_bytes(b"analyst notes")
    refused = lr("evidence", "get", sha, "--out", str(copy))
    assert refused.exit_code == 2, refused.output
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert copy.read_bytes() == b"analyst notes"

    ok(lr("evidence", "get", sha, "--out", str(copy), "--force"))
    assert copy.read_bytes() == subject.read_bytes()
    assert sorted(p.name for p in copy.parent.iterdir()) == ["copy.bin"]  # no partial left


def test_run_getfile_json_gives_the_completed_record_with_its_evidence(
    lr: Lr, device_id: str, tmp_path: Path,
) -> None:
    subject = tmp_path / "a.txt"
    subject.write_text("alpha\n")
    session_id = json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"]
    record = json.loads(ok(lr("--json", "run", session_id, f"getfile {subject}")).stdout)
    assert record["status"] == "completed"
    assert record["result"]["evidence_sha256"] == _sha256sum(subject)


def test_a_failed_getfile_exits_8_with_one_line(lr: Lr, device_id: str, tmp_path: Path) -> None:
    session_id = json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"]
    result = lr("run", session_id, f"getfile {tmp_path}")
    assert result.exit_code == 8, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("lr: getfile failed: is a directory")


def test_evidence_get_of_an_unknown_sha256_exits_5(lr: Lr, tmp_path: Path) -> None:
    target = tmp_path / "never.bin"
    result = lr("evidence", "get", "ab" * 32, "--out", str(target))
    assert result.exit_code == 5, result.output
    assert f"no evidence with sha256 {'ab' * 32}" in result.stderr
    assert not target.exists() and list(tmp_path.glob(".never.bin.*")) == []


def test_evidence_get_of_a_malformed_sha256_is_a_usage_error(lr: Lr, tmp_path: Path) -> None:
    result = lr("evidence", "get", "not-a-hash", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2, result.output
    assert "expected 64 lowercase hex digits" in result.stderr
