"""cat, hexdump, strings, logs, users and sessions through API → pipeline → a real agent whose
system root is a test tree, compared with sha256sum, hexdump -C, strings, last and who."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.render import render_record
from tasks.signing import KeyPair
from tests.login_files import DEAD_PROCESS, USER_PROCESS, Login, write_utmp
from tests.stack import Stack, completed, new_device_id, own_prefix_stack

HASH = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.tksEoNZ3PV7A"
LOGINS = [
    Login(USER_PROCESS, 4242, "pts/0", "alice", "203.0.113.9", 1772356502, 0, "203.0.113.9"),
    Login(USER_PROCESS, 5151, "pts/1", "mallory", "192.0.2.66", 1772356600, 0, "192.0.2.66"),
    Login(DEAD_PROCESS, 4242, "pts/0", "", "", 1772360000),
]


@pytest.fixture(scope="module")
def system_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("system")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "alice:x:1000:1000::/home/alice:/bin/bash\n"
                                     "mallory:x:1001:1001::/home/mallory:/bin/sh\n")
    (root / "etc/shadow").write_text(f"root:!:19000::::::\nalice:{HASH}:19000::::::\n"
                                     "mallory::19000::::::\n")
    (root / "etc/group").write_text("sudo:x:27:mallory\nalice:x:1000:\nmallory:x:1001:\n")
    write_utmp(root / "var/log/wtmp", LOGINS)
    write_utmp(root / "run/utmp", LOGINS[:2])
    (root / "var/log/auth.log").write_text(
        "2026-03-01T09:15:02+00:00 web1 sshd[901]: Accepted password for mallory from "
        "192.0.2.66 port 50211 ssh2\n"
        "2026-03-01T09:16:40+00:00 web1 sudo: mallory : COMMAND=/bin/bash\n")
    return root


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair,
          system_root: Path) -> Iterator[Stack]:
    """API + one agent reading the test tree as its system root."""
    with own_prefix_stack(redis_url, [new_device_id("ev")], tmp_path_factory.mktemp("agents"),
                          signing=signing_keys, system_root=system_root) as st:
        yield st


@pytest.fixture
def session(stack: Stack) -> str:
    return stack.open_session(next(iter(stack.agents)))


def tool(*argv: str) -> bytes:
    return subprocess.run(argv, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def implant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("subject") / "implant.bin"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40
                     + b"\x00C2=https://evil.example/beacon\x00\x1b[2Jgone\n")
    return path


def test_cat_returns_the_file_binary_safe_with_the_sha256sum(stack: Stack, session: str,
                                                             implant: Path) -> None:
    body = stack.run(session, f"cat {implant} --max-bytes 1048576")
    result = completed(body)
    sha = tool("sha256sum", str(implant)).split()[0].decode()
    assert result["encoding"] == "base64" and result["file_sha256"] == result["sha256"] == sha
    shown = render_record(body)
    assert "\x1b" not in shown and "\\x1b[2Jgone" in shown and "\\xff" in shown


def test_hexdump_through_the_agent_draws_what_hexdump_c_draws(stack: Stack, session: str,
                                                              implant: Path) -> None:
    body = stack.run(session, f"hexdump {implant} --offset 250 --length 100")
    completed(body)
    expected = tool("hexdump", "-C", "-v", "-s", "250", "-n", "100", str(implant))
    assert render_record(body).splitlines()[:-1] == expected.decode().splitlines()


def test_strings_through_the_agent_match_strings(stack: Stack, session: str,
                                                 implant: Path) -> None:
    result = completed(stack.run(session, f"strings {implant} --min 6"))
    assert [s["text"] for s in result["strings"]] == tool(
        "strings", "-a", "-n", "6", str(implant)).decode().splitlines()


def test_logs_wtmp_lists_the_logins_last_lists(stack: Stack, session: str,
                                               system_root: Path) -> None:
    result = completed(stack.run(session, "logs --source wtmp"))
    last = tool("last", "-f", str(system_root / "var/log/wtmp"), "-w", "-i").decode()
    listed = sorted(tuple(line.split()[:3]) for line in last.splitlines()
                    if line.split()[:1] in (["alice"], ["mallory"]))
    assert sorted((x["user"], x["line"], x["address"]) for x in result["logins"]
                  if x["type"] == "USER_PROCESS") == listed


def test_logs_auth_with_grep(stack: Stack, session: str) -> None:
    result = completed(stack.run(session, "logs --source auth --grep 'Accepted password'"))
    (entry,) = result["entries"]
    assert (entry["program"], entry["pid"], entry["host"]) == ("sshd", 901, "web1")


def test_a_bad_regex_is_a_usage_error_and_audited(stack: Stack, session: str) -> None:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session}/commands", json={"line": "logs --grep '(x'"})
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert "not a regular expression" in error["message"]
        assert error["hint"].startswith("usage: logs")
        actions = [(e["action"], e["decision"]) for e in http.get(
            "/audit", params={"session": session}).json()]
    assert ("command.denied", "denied") in actions


def test_users_tell_password_status_and_no_hash_reaches_results_or_audit(
        stack: Stack, session: str) -> None:
    body = stack.run(session, "users")
    result = completed(body)
    found = {u["name"]: u for u in result["users"]}
    assert {n: u["password"] for n, u in found.items()} == {
        "root": "locked", "alice": "has-password", "mallory": "no-password"}
    assert found["mallory"]["sudo"] and found["mallory"]["sudo_via"] == ["group sudo"]
    assert found["mallory"]["last_login"] == 1772356600.0
    raw_audit = str(stack.plane.client.xrange(stack.plane.keys.audit))
    for text in (str(body), render_record(body), raw_audit):
        assert HASH not in text and "$y$" not in text


def test_sessions_list_who_is_in_utmp(stack: Stack, session: str, system_root: Path) -> None:
    result = completed(stack.run(session, "sessions"))
    who = tool("who", str(system_root / "run/utmp")).decode().splitlines()
    assert sorted([s["user"], s["line"]] for s in result["sessions"]) == sorted(
        line.split()[:2] for line in who)
