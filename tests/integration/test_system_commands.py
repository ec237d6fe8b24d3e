"""modules, mounts, interfaces, env, history and findfile's filters through a real agent,
checked against lsmod, findmnt, ip, find, grep, sha256sum and tail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.signing import KeyPair
from tests.stack import Stack, completed, new_device_id, own_prefix_stack

pytestmark = pytest.mark.integration

#: Accounts of the endpoint tree the agent reads histories from.
PASSWD = """root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000::/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/usr/bin/zsh
ghost:x:1002:1002::/home/ghost:/bin/sh
daemon:x:1:1::/:/usr/sbin/nologin
"""


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An endpoint root: etc/passwd and homes holding bash, zsh and fish histories."""
    root = tmp_path_factory.mktemp("endpoint")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text(PASSWD)
    alice = root / "home/alice"
    (alice / ".local/share/fish").mkdir(parents=True)
    (alice / ".bash_history").write_text("".join(f"cmd {n}\n" for n in range(120)))
    (alice / ".local/share/fish/fish_history").write_text("- cmd: ls\n  when: 1700000000\n")
    bob = root / "home/bob"
    bob.mkdir(parents=True)
    (bob / ".zsh_history").write_bytes(b": 1700000000:0;curl http://x | sh\nwget \xff\xfe")
    (bob / ".bash_history").symlink_to("/dev/null")
    (root / "root").mkdir()
    return root


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair,
          endpoint: Path) -> Iterator[Stack]:
    with own_prefix_stack(redis_url, [new_device_id("sys")], tmp_path_factory.mktemp("sys"),
                          signing=signing_keys, command_expiry_s=5.0,
                          persistence_root=endpoint) as st:
        yield st


@pytest.fixture(scope="module")
def session(stack: Stack) -> str:
    return stack.open_session(next(iter(stack.agents)))


def _out(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


def test_modules_lists_what_lsmod_lists_or_says_there_are_none(
        stack: Stack, session: str) -> None:
    body = stack.run(session, "modules")
    if not Path("/proc/modules").exists():
        # A kernel without loadable modules (this kind of VM): a clear failure, not an empty list.
        assert body["status"] == "failed", body
        assert body["error"]["code"] == "unsupported_on_endpoint"
        assert "/proc/modules does not exist" in body["error"]["message"]
        return
    result = completed(body)
    if shutil.which("lsmod"):
        rows = [line.split() for line in _out("lsmod").splitlines()[1:]]
        expected = {r[0]: (int(r[1]), int(r[2])) for r in rows}
    else:
        rows = [line.split() for line in Path("/proc/modules").read_text().splitlines()]
        expected = {r[0]: (int(r[1]), int(r[2])) for r in rows}
    got = {m["name"]: (m["size_bytes"], m["refcount"]) for m in result["modules"]}
    assert got == expected


def _findmnt() -> list[tuple[str, str, str]]:
    listing = json.loads(_out("findmnt", "-J", "-l", "--kernel", "-o",
                              "TARGET,SOURCE,FSTYPE,OPTIONS", "--tab-file", "/proc/self/mounts"))
    return sorted((f["target"], f["fstype"], f["options"]) for f in listing["filesystems"])


def test_mounts_equal_findmnt(stack: Stack, session: str) -> None:
    # Other tests on this machine may mount meanwhile (a network namespace): try again then.
    for _ in range(3):
        before = _findmnt()
        result = completed(stack.run(session, "mounts"))
        if _findmnt() == before:
            break
    got = sorted((m["target"], m["fstype"], ",".join(m["options"])) for m in result["mounts"])
    assert got == before
    assert ("/proc", "proc") in {(m["target"], m["fstype"]) for m in result["mounts"]}


def _ip_snapshot() -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """What `ip` shows: each interface's (up, addresses), and each family's routes."""
    links = {link["ifname"]: ("UP" in link["flags"], sorted(
        (a["family"], a["local"], a["prefixlen"]) for a in link.get("addr_info", [])))
        for link in json.loads(_out("ip", "-j", "addr"))}
    routes = {family: sorted((r["dst"], r.get("gateway"), r["dev"])
                             for r in json.loads(_out("ip", "-j", flag, "route"))
                             if r.get("type", "unicast") == "unicast")
              for family, flag in (("inet", "-4"), ("inet6", "-6"))}
    return links, routes


def test_interfaces_and_routes_equal_ip(stack: Stack, session: str) -> None:
    # Other tests on this machine may add a veth pair meanwhile: compare what stayed put.
    links_before, routes_before = _ip_snapshot()
    result = completed(stack.run(session, "interfaces"))
    links_after, routes_after = _ip_snapshot()
    stable = {name for name, link in links_before.items() if links_after.get(name) == link}
    assert "lo" in stable
    got = {i["name"]: (i["up"], sorted((a["family"], a["address"], a["prefixlen"])
                                       for a in i["addresses"])) for i in result["interfaces"]}
    assert stable <= set(got)
    assert {name: got[name] for name in stable} == {name: links_before[name] for name in stable}
    for family in ("inet", "inet6"):
        if routes_before[family] != routes_after[family]:
            continue
        got_routes = sorted((r["destination"], r["gateway"], r["interface"])
                            for r in result["routes"] if r["family"] == family)
        assert got_routes == routes_before[family]


def test_env_shows_a_process_environment_with_secrets_redacted(
        stack: Stack, session: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "GREETING": "hello world", "API_TOKEN": "tok-123",
           "DB_PASSWORD": "hunter2", "AWS_SECRET_ACCESS_KEY": "abc",
           "DATABASE_URL": "postgres://app:pw-in-url@db:5432/app"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        result = completed(stack.run(session, f"env {child.pid}"))
        shown = {v["name"]: v["value"] for v in result["variables"]}
        raw = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
        assert set(shown) == {e.split(b"=", 1)[0].decode() for e in raw if e} == set(env)
        assert shown["GREETING"] == "hello world" and shown["PATH"] == env["PATH"]
        for secret in ("API_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
            assert shown[secret] == "<redacted>"
        assert shown["DATABASE_URL"] == "postgres://app:<redacted>@db:5432/app"
        assert not any(s in json.dumps(result) for s in ("tok-123", "hunter2", "pw-in-url"))
    finally:
        child.kill()
        child.wait()


def test_env_of_a_missing_process_says_so(stack: Stack, session: str) -> None:
    body = stack.run(session, "env 4194303")
    assert body["status"] == "failed" and body["error"]["code"] == "process_not_found", body


def test_history_lists_each_accounts_files_as_tail_and_sha256sum_see_them(
        stack: Stack, session: str, endpoint: Path) -> None:
    result = completed(stack.run(session, "history --max 7"))
    files = {f["path"]: f for f in result["files"]}
    assert set(files) == {"/home/alice/.bash_history", "/home/alice/.local/share/fish/fish_history",
                          "/home/bob/.zsh_history", "/home/bob/.bash_history"}
    for shown, f in files.items():
        real = endpoint / shown.lstrip("/")
        if real.is_symlink():
            assert f["link_target"] == "/dev/null" and f["lines"] == [] and f["sha256"] is None
            continue
        assert f["sha256"] == _out("sha256sum", str(real)).split()[0]
        tail = subprocess.run(["tail", "-n", "7", str(real)], capture_output=True,
                              check=True).stdout
        assert f["lines"] == tail.decode(errors="replace").splitlines()
        assert f["size_bytes"] == real.stat().st_size
    assert files["/home/alice/.bash_history"]["total_lines"] == 120
    assert files["/home/bob/.zsh_history"]["shell"] == "zsh"
    assert {f["user"] for f in result["files"]} == {"alice", "bob"}


def test_history_of_one_user_and_of_an_unknown_one(stack: Stack, session: str) -> None:
    result = completed(stack.run(session, "history --user bob --max 1"))
    assert {f["user"] for f in result["files"]} == {"bob"}
    body = stack.run(session, "history --user mallory")
    assert body["status"] == "failed" and "no account 'mallory'" in body["error"]["message"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Files of known sizes, times and content to search."""
    (tmp_path / "d/e").mkdir(parents=True)
    specs = {"small.txt": (b"hello\n", 1_600_000_000), "mid.log": (b"x" * 5000, 1_700_000_000),
             "d/big.bin": (os.urandom(20_000), 1_750_000_000),
             "d/e/key.pem": (b"-----BEGIN secret-42\n", 1_760_000_000),
             "d/e/other.txt": (b"no secret here\nsecret-7 at line 2\n", 1_650_000_000)}
    for rel, (data, mtime) in specs.items():
        (tmp_path / rel).write_bytes(data)
        os.utime(tmp_path / rel, (mtime, mtime))
    return tmp_path


def _found(stack: Stack, session: str, line: str) -> list[str]:
    result = completed(stack.run(session, line))
    return sorted(m["path"] for m in result["matches"])


def _find(*argv: str) -> list[str]:
    return sorted(_out("find", *argv).split())


def test_findfile_newer_equals_find_newermt(stack: Stack, session: str, tree: Path) -> None:
    expected = _find(str(tree), "-newermt", "@1700000001")
    assert _found(stack, session, f"findfile --path {tree} --newer @1700000001") == expected
    local = _out("date", "-d", "@1700000001", "+%Y-%m-%dT%H:%M:%S").strip()
    assert _found(stack, session, f"findfile --path {tree} --newer {local}") == expected
    assert str(tree / "d/big.bin") in expected and str(tree / "mid.log") not in expected
    got = _found(stack, session, f"findfile '*.txt' --path {tree} --newer 2020-01-01T00:00Z")
    assert got == _find(str(tree), "-name", "*.txt", "-newermt", "2020-01-01T00:00Z")
    assert got == [str(tree / "d/e/other.txt"), str(tree / "small.txt")]


def test_findfile_size_equals_find_size(stack: Stack, session: str, tree: Path) -> None:
    for ours, finds, count in (("+4k", ["-size", "+4096c"], 2),
                               ("-4k", ["-size", "-4096c"], 3),
                               ("1k..8k", ["-size", "+1023c", "-size", "-8193c"], 1),
                               ("5000", ["-size", "5000c"], 1)):
        expected = _find(str(tree), "-type", "f", *finds)
        assert _found(stack, session, f"findfile --path {tree} --size {ours}") == expected
        assert len(expected) == count, ours


def test_findfile_sha256_equals_sha256sum(stack: Stack, session: str, tree: Path) -> None:
    target = _out("sha256sum", str(tree / "d/big.bin")).split()[0]
    assert _found(stack, session, f"findfile --path {tree} --sha256 {target.upper()}") == [
        str(tree / "d/big.bin")]


def test_findfile_grep_equals_grep_rl(stack: Stack, session: str, tree: Path) -> None:
    grep = sorted(_out("grep", "-rlE", "^secret-[0-9]+|BEGIN secret", str(tree)).split())
    assert _found(stack, session,
                  f"findfile --path {tree} --grep '^secret-[0-9]+|BEGIN secret'") == grep
    assert len(grep) == 2


@pytest.mark.parametrize("line, problem", [
    ("findfile --size 10Q", "invalid size range '10Q'"),
    ("findfile --newer yesterday", "invalid time 'yesterday'"),
    ("findfile --grep '(unclosed'", "invalid regular expression"),
    ("findfile --sha256 abc", "sha256"),
    ("collect /tmp --max-bytes lots", "invalid size 'lots'"),
    ("memdump self", "pid"),
])
def test_bad_filters_are_usage_errors(stack: Stack, session: str, line: str,
                                      problem: str) -> None:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session}/commands", json={"line": line})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "usage" and problem in error["message"]
    assert error["hint"].startswith("usage: ")
