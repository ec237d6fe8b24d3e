"""`lr run` of the content commands: a hex dump drawn as `hexdump -C` draws it, and `--json`
carrying the bytes binary-safe with the sha256 `sha256sum` gives."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli import Lr, ok

pytestmark = pytest.mark.integration


def test_lr_run_draws_hexdump_and_json_carries_the_bytes(lr: Lr, device_id: str,
                                                         tmp_path: Path) -> None:
    subject = tmp_path / "case" / "dropper.bin"
    subject.parent.mkdir()
    subject.write_bytes(b"MZ\x90\x00" + bytes(range(200)) + b"\x1b]0;owned\x07 tail\n")
    session = str(json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"])

    shown = ok(lr("run", session, f"hexdump {subject} --offset 3 --length 60")).stdout
    expected = subprocess.run(["hexdump", "-C", "-v", "-s", "3", "-n", "60", str(subject)],
                              capture_output=True, text=True, check=True).stdout
    assert shown.splitlines()[:-1] == expected.splitlines()
    size = subject.stat().st_size
    assert shown.splitlines()[-1].startswith(f"-- bytes 3-63 of {size} (60 returned, sha256 ")

    record = json.loads(ok(lr("--json", "run", session, f"cat {subject}")).stdout)
    result = record["result"]
    assert result["encoding"] == "base64"
    assert base64.b64decode(result["data"]) == subject.read_bytes()
    sha = subprocess.run(["sha256sum", str(subject)], capture_output=True, text=True,
                         check=True).stdout.split()[0]
    assert result["sha256"] == result["file_sha256"] == sha
    text = ok(lr("run", session, f"cat {subject}")).stdout
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;owned\\x07 tail" in text
