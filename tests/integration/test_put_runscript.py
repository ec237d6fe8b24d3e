"""put and runscript through API → pipeline → real agent, on real files and processes."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.files.library import CHUNK_BYTES, library_of
from tasks.signing import KeyPair
from tests.stack import Stack, completed, own_prefix_stack

#: The agent's script time limit in this module.
SCRIPT_TIMEOUT_S = 5.0
#: The agent's result limit in this module (so truncation is quick to reach).
OUTPUT_MAX_BYTES = 256 * 1024
#: The shipped example script.
PERSISTENCE_CHECK = Path(__file__).resolve().parents[2] / "library" / "persistence_check.sh"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys: KeyPair) -> Iterator[Stack]:
    """API + one agent whose scripts stop after 5 s and whose results stop at 256 KiB.

    5 s leaves the shipped check room to walk this machine's real autostart places while
    other tests run beside it."""
    device = f"lib-{uuid.uuid4().hex[:8]}"
    with own_prefix_stack(redis_url, [device], tmp_path_factory.mktemp("agents"),
                          signing=signing_keys, command_expiry_s=5.0,
                          runscript_timeout_s=SCRIPT_TIMEOUT_S,
                          output_max_bytes=OUTPUT_MAX_BYTES) as st:
        yield st


@pytest.fixture
def session(stack: Stack) -> str:
    return stack.open_session(next(iter(stack.agents)))


def _add(stack: Stack, content: bytes, suffix: str = ".sh") -> tuple[str, str]:
    """Add `content` to the library under a fresh name; (name, sha256)."""
    name = f"t-{uuid.uuid4().hex[:8]}{suffix}"
    item, _ = library_of(stack.plane).add(name, content, "admin")
    return name, item.sha256


def _tamper(stack: Stack, sha256: str) -> None:
    """Change one stored chunk of a library file behind the library's back."""
    key = stack.plane.keys.library_blob(sha256, 0)
    chunk = stack.plane.client.get(key)
    assert chunk
    stack.plane.client.set(key, bytes([chunk[0] ^ 0xFF]) + chunk[1:])


def _failed(body: dict, code: str) -> dict:
    assert body.get("status") == "failed", body
    assert body["error"]["code"] == code, body
    return body["error"]


def _sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def test_put_writes_the_file_with_the_sha256_sha256sum_computes(stack: Stack, session: str,
                                                                  tmp_path: Path) -> None:
    content = os.urandom(CHUNK_BYTES + CHUNK_BYTES // 2)
    name, sha256 = _add(stack, content, ".bin")
    dest = tmp_path / "tool.bin"
    result = completed(stack.run(session, f"put {name} {dest}"))
    assert _sha256sum(dest) == sha256 == result["sha256"]
    assert result == {"name": name, "path": str(dest), "size_bytes": len(content),
                      "sha256": sha256, "overwritten": False}
    assert dest.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["tool.bin"]  # no temporary file left


def test_put_defaults_to_the_session_directory_and_into_a_directory(stack: Stack, session: str,
                                                                     tmp_path: Path) -> None:
    name, sha256 = _add(stack, b"#!/bin/sh\necho hi\n")
    completed(stack.run(session, f"cd {tmp_path}"))
    assert completed(stack.run(session, f"put {name}"))["path"] == str(tmp_path / name)
    sub = tmp_path / "sub"
    sub.mkdir()
    assert completed(stack.run(session, f"put {name} sub"))["path"] == str(sub / name)
    assert _sha256sum(sub / name) == sha256


def test_put_refuses_to_overwrite_unless_told(stack: Stack, session: str,
                                              tmp_path: Path) -> None:
    name, sha256 = _add(stack, b"new content\n")
    dest = tmp_path / "existing.txt"
    dest.write_bytes(b"original\n")
    error = _failed(stack.run(session, f"put {name} {dest}"), "path_exists")
    assert "already exists" in error["message"] and "--overwrite" in error["hint"]
    assert dest.read_bytes() == b"original\n"
    result = completed(stack.run(session, f"put {name} {dest} --overwrite"))
    assert result["overwritten"] is True
    assert _sha256sum(dest) == sha256


def test_put_replaces_a_symlink_at_dest_and_never_writes_through_it(stack: Stack, session: str,
                                                                     tmp_path: Path) -> None:
    name, _ = _add(stack, b"payload\n")
    target = tmp_path / "target.txt"
    target.write_bytes(b"keep me\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    _failed(stack.run(session, f"put {name} {link}"), "path_exists")
    completed(stack.run(session, f"put {name} {link} --overwrite"))
    assert not link.is_symlink()
    assert link.read_bytes() == b"payload\n"
    assert target.read_bytes() == b"keep me\n"


def test_put_of_a_tampered_blob_is_refused_and_writes_nothing(stack: Stack, session: str,
                                                              tmp_path: Path) -> None:
    name, sha256 = _add(stack, os.urandom(CHUNK_BYTES + 10), ".bin")
    _tamper(stack, sha256)
    dest = tmp_path / "out.bin"
    error = _failed(stack.run(session, f"put {name} {dest}"), "library_integrity")
    assert sha256 in error["message"] and "tampered" in error["message"]
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_library_name_is_refused_at_request_time_and_audited(
        stack: Stack, session: str) -> None:
    body = stack.run(session, "put no-such-tool.sh /tmp/x")
    assert body["error"]["code"] == "unknown_library_item", body
    denials = [e for e in stack.plane.audit.read(session=session)
               if e.action == "command.denied"]
    assert denials[-1].details["reason"] == "unknown_library_item"


def test_a_responder_may_not_put_or_run_scripts(stack: Stack) -> None:
    token = stack.user(f"resp-{uuid.uuid4().hex[:6]}", ["responder"])
    session = stack.open_session(next(iter(stack.agents)), token)
    name, _ = _add(stack, b"echo hi\n")
    for line in (f"put {name} /tmp/never", f"runscript {name}"):
        body = stack.run(session, line, token)
        assert body["error"]["code"] == "permission_denied", body
        assert "live.execute" in body["error"]["message"]


def test_runscript_gives_the_scripts_output_and_exit_code(stack: Stack, session: str,
                                                          tmp_path: Path) -> None:
    name, sha256 = _add(stack, b'echo "args: $1|$2|$#"; pwd; echo oops >&2; exit 3\n')
    completed(stack.run(session, f"cd {tmp_path}"))
    result = completed(stack.run(session, f"runscript {name} -- one 'two words'"))
    assert result["exit_code"] == 3
    assert result["stdout"] == f"args: one|two words|2\n{tmp_path}\n"
    assert result["stderr"] == "oops\n"
    assert result["sha256"] == sha256 and result["interpreter"] == ["/bin/sh"]
    assert result["timed_out"] is False


def test_runscript_runs_python_with_a_clean_environment(stack: Stack, session: str) -> None:
    script = (b"import os, sys\n"
              b"print(sys.argv[1:], sorted(k for k in os.environ if k.startswith('LR_')))\n")
    name, _ = _add(stack, script, ".py")
    result = completed(stack.run(session, f"runscript {name} -- --flag x"))
    assert result["exit_code"] == 0
    assert result["stdout"] == "['--flag', 'x'] []\n"


def test_a_script_past_its_time_limit_is_stopped_with_its_children(stack: Stack, session: str,
                                                                   tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"echo $$ > {pids}; sleep 300 & echo $! >> {pids}; echo started; wait\n".encode()
    name, _ = _add(stack, body)
    started = time.monotonic()
    result = completed(stack.run(session, f"runscript {name}"))
    assert time.monotonic() - started < SCRIPT_TIMEOUT_S + 10
    assert result["timed_out"] is True and result["exit_code"] is None
    assert result["timeout_s"] == SCRIPT_TIMEOUT_S
    assert result["stdout"] == "started\n"
    for pid in (int(p) for p in pids.read_text().split()):
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass


def test_output_over_the_limit_is_cut_with_a_marker(stack: Stack, session: str) -> None:
    name, _ = _add(stack, b"head -c 1000000 /dev/zero | tr '\\0' y; echo; echo done >&2\n")
    result = completed(stack.run(session, f"runscript {name}"))
    assert result["stdout_truncated"] is True and result["stderr_truncated"] is False
    assert result["stdout_bytes"] == 1_000_001
    kept, marker = result["stdout"].split("\n[output truncated: ")
    assert set(kept) == {"y"} and len(kept) < OUTPUT_MAX_BYTES // 2
    assert marker == f"1000001 bytes written, {len(kept)} kept]"
    assert result["stderr"] == "done\n"


def test_a_tampered_script_is_refused_and_never_runs(stack: Stack, session: str,
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    name, sha256 = _add(stack, f"touch {marker}\n".encode())
    _tamper(stack, sha256)
    error = _failed(stack.run(session, f"runscript {name}"), "library_integrity")
    assert "nothing written or run" in error["message"]
    assert not marker.exists()


def test_persistence_check_reports_planted_and_real_autostart_places(
        stack: Stack, session: str, tmp_path: Path) -> None:
    with stack.client() as http:
        name = f"pc-{uuid.uuid4().hex[:6]}.sh"
        added = http.put(f"/library/{name}", content=PERSISTENCE_CHECK.read_bytes())
        assert added.status_code == 201, added.text
    root = tmp_path / "root"
    (root / "etc" / "cron.d").mkdir(parents=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    cron = root / "etc" / "cron.d" / "backdoor"
    cron.write_text("* * * * * root /usr/local/bin/beacon\n")
    unit = root / "etc" / "systemd" / "system" / "beacon.service"
    unit.write_text("[Service]\nExecStart=/usr/local/bin/beacon --quiet\n")
    planted = completed(stack.run(session, f"runscript {name} -- {root}"))
    assert planted["exit_code"] == 0, planted
    rows = {line.split("\t")[1]: line.split("\t") for line in planted["stdout"].splitlines()
            if not line.startswith("#")}
    assert rows[str(cron)][0] == "cron" and rows[str(cron)][4] == _sha256sum(cron)
    assert rows[str(unit)][0] == "systemd" and rows[str(unit)][5] == "/usr/local/bin/beacon --quiet"
    assert rows[str(unit)][2] == psutil.Process().username()
    real = completed(stack.run(session, f"runscript {name}"))
    assert real["exit_code"] == 0
    profile_d = sorted(str(p) for p in Path("/etc/profile.d").iterdir())
    assert profile_d, "this Debian machine has /etc/profile.d entries"
    reported = [line.split("\t")[1] for line in real["stdout"].splitlines()
                if line.startswith("profile.d\t")]
    assert reported == profile_d


def test_put_and_runscript_run_while_the_device_is_isolated(stack: Stack, session: str,
                                                             tmp_path: Path) -> None:
    device = next(iter(stack.agents))
    name, sha256 = _add(stack, b"echo isolated but reachable\n")
    stack.plane.devices.set_isolation(device, "full", "admin")
    try:
        assert completed(stack.run(session, f"put {name} {tmp_path / 'x.sh'}"))["sha256"] == sha256
        ran = completed(stack.run(session, f"runscript {name}"))
        assert ran["stdout"] == "isolated but reachable\n"
    finally:
        stack.plane.devices.clear_isolation(device)


def test_put_into_a_missing_directory_says_so(stack: Stack, session: str,
                                              tmp_path: Path) -> None:
    name, _ = _add(stack, b"x\n")
    error = _failed(stack.run(session, f"put {name} {tmp_path / 'no' / 'such' / 'x'}"),
                    "path_not_found")
    assert str(tmp_path / "no" / "such") in error["message"]
