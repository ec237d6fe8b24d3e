"""Bad input found while attacking the API gets a 4xx naming what was wrong, and is audited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.signing import KeyPair
from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys: KeyPair) -> Iterator[Stack]:
    with own_prefix_stack(redis_url, [new_device_id("bad")], tmp_path_factory.mktemp("bad"),
                          signing=signing_keys) as st:
        yield st


@pytest.fixture
def session_a(stack: Stack) -> str:
    return stack.open_session(next(iter(stack.agents)))


@pytest.mark.parametrize("ttl", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-5", b"0"])
def test_a_token_lifetime_must_be_a_finite_positive_number(stack: Stack, ttl: bytes) -> None:
    with stack.client() as http:
        resp = http.post("/users/admin/tokens", content=b'{"ttl_s": ' + ttl + b"}",
                         headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert "ttl_s" in resp.json()["error"]["message"]


@pytest.mark.parametrize("line", ["dir /tmp/a\x00b", "getfilehash /etc/\x00passwd",
                                  "findfile x\x00 --path /tmp", "cd /tmp\x00"])
def test_a_nul_byte_in_a_path_is_a_usage_error(stack: Stack, session_a: str, line: str) -> None:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/commands", json={"line": line})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "usage" and "NUL byte" in error["message"]
    assert error["hint"].startswith("usage: ")
    denied = [e for e in stack.plane.audit.read(session=session_a)
              if e.action == "command.denied"]
    assert denied and denied[-1].details["reason"] == "usage"


@pytest.mark.parametrize("path", ["/proc/1/root/etc/hostname", "/proc/self/exe",
                                  "/sys/kernel", "/proc/../proc/1/environ"])
def test_remediate_refuses_pseudo_filesystems_before_anything_is_sent(
        stack: Stack, session_a: str, path: str) -> None:
    with stack.client() as http:
        resp = http.post(f"/sessions/{session_a}/commands", json={"line": f"remediate {path}"})
    assert resp.status_code == 400, resp.text
    assert "pseudo-filesystem" in resp.json()["error"]["message"]


def test_remediate_through_an_unreadable_proc_root_fails_cleanly(
        stack: Stack, session_a: str) -> None:
    """Relative to a cwd in /proc the agent resolves the path: an error it cannot read past is
    a clear failure, never an internal error."""
    assert stack.run(session_a, "cd /proc/1")["status"] == "completed"
    body = stack.run(session_a, "remediate root/etc/no-such-file-here")
    assert body["status"] == "failed"
    assert body["error"]["code"] in ("endpoint_permission_denied", "path_not_found")
