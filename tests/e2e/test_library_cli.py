"""`lr library` and the commands that use it, as an admin and an analyst drive them."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cli import Lr
from tests.e2e.cli import ok as _ok
from tests.stack import Stack

pytestmark = pytest.mark.integration

#: The library limit of these tests' orchestrator.
LIMIT_BYTES = 1024 * 1024
#: The shipped example script.
PERSISTENCE_CHECK = Path(__file__).resolve().parents[2] / "library" / "persistence_check.sh"


@pytest.fixture
def stack(stack_factory, device_id: str) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """API + one agent, with a 1 MiB library limit."""
    with stack_factory([device_id], library_max_bytes=LIMIT_BYTES) as st:
        yield st


def _session(lr: Lr, device_id: str) -> str:
    return str(json.loads(_ok(lr("--json", "session", "open", device_id)).stdout)["id"])


def test_add_list_replace_remove(lr: Lr, tmp_path: Path) -> None:
    script = tmp_path / "triage.sh"
    script.write_text("echo one\n")
    added = _ok(lr("library", "add", str(script), "--description", "first look")).stdout
    sha_one = hashlib.sha256(b"echo one\n").hexdigest()
    assert added.strip() == f"added triage.sh (9 bytes, sha256 {sha_one})"
    table = _ok(lr("library", "list")).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "BYTES", "SHA256"]
    assert table[1].split()[:3] == ["triage.sh", "9", sha_one[:16] + "…"]
    assert table[1].endswith("first look")

    script.write_text("echo two\n")
    again = lr("library", "add", str(script))
    assert again.exit_code == 2, again.output
    assert "already has 'triage.sh'" in again.stderr and "--replace" in again.stderr
    replaced = json.loads(_ok(lr("--json", "library", "add", str(script), "--replace")).stdout)
    assert replaced["replaced_sha256"] == sha_one
    assert replaced["sha256"] == hashlib.sha256(b"echo two\n").hexdigest()

    gone = _ok(lr("library", "remove", "triage.sh")).stdout
    assert gone.startswith("removed triage.sh")
    assert json.loads(_ok(lr("--json", "library", "list")).stdout) == []
    missing = lr("library", "remove", "triage.sh")
    assert missing.exit_code == 5
    assert "no library file named 'triage.sh'" in missing.stderr


def test_refusals_are_one_line_with_their_exit_code(lr: Lr, stack: Stack,
                                                    tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (LIMIT_BYTES + 1))
    too_big = lr("library", "add", str(big))
    assert too_big.exit_code == 2, too_big.output
    assert f"the library takes at most {LIMIT_BYTES} bytes" in too_big.stderr
    small = tmp_path / "ok.sh"
    small.write_text("true\n")
    bad_name = lr("library", "add", str(small), "--name", "../ok.sh")
    assert bad_name.exit_code == 2
    assert "not a library name" in bad_name.stderr
    token = stack.user("analyst", ["advanced"])
    denied = lr("library", "add", str(small), token=token)
    assert denied.exit_code == 4
    assert "lacks permission 'admin'" in denied.stderr
    assert json.loads(_ok(lr("--json", "library", "list", token=token)).stdout) == []


def test_put_and_runscript_from_lr_run(lr: Lr, device_id: str, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text('printf "hello\\t%s\\n" "$1"; echo warn >&2; exit 4\n')
    _ok(lr("library", "add", str(script)))
    session = _session(lr, device_id)
    ran = lr("run", session, "runscript hello.sh -- world")
    assert ran.exit_code == 18, ran.output  # the script's non-zero exit is lr run's failure
    out = ran.stdout
    assert out.splitlines() == ["hello\tworld", "--- stderr ---", "warn",
                                out.splitlines()[-1]]
    assert out.splitlines()[-1].startswith("hello.sh: exit code 4 (")
    dest = tmp_path / "copy.sh"
    put = _ok(lr("run", session, f"put hello.sh {dest}")).stdout
    assert put.startswith(f"wrote {dest} from library file hello.sh")
    sha = subprocess.run(["sha256sum", str(dest)], capture_output=True, text=True,
                         check=True).stdout.split()[0]
    assert sha == hashlib.sha256(script.read_bytes()).hexdigest()
    again = lr("run", session, f"put hello.sh {dest}")
    assert again.exit_code == 8
    assert "already exists" in again.stderr


def test_the_shipped_persistence_check_loads_and_runs(lr: Lr, device_id: str) -> None:
    _ok(lr("library", "add", str(PERSISTENCE_CHECK), "--description", "autostart places"))
    session = _session(lr, device_id)
    out = _ok(lr("run", session, "runscript persistence_check.sh")).stdout
    assert "CATEGORY\tPATH\tOWNER\tMTIME_UTC\tSHA256\tNOTE" in out
    assert out.splitlines()[-1].startswith("persistence_check.sh: exit code 0")
