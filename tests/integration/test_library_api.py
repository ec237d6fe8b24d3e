"""The library through the API on a real Redis: add, list, remove, and every refusal audited."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from orchestrator.files.library import CHUNK_BYTES, LibraryStore, library_of
from tasks.errors import LibraryItemNotFoundError
from tasks.signing import KeyPair
from tests.stack import Stack, own_prefix_stack

#: The library limit of this module's orchestrator.
LIMIT_BYTES = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys: KeyPair) -> Iterator[Stack]:
    """The API alone (the library needs no agent), with a 3 MiB library limit."""
    with own_prefix_stack(redis_url, [], tmp_path_factory.mktemp("lib"),
                          signing=signing_keys, library_max_bytes=LIMIT_BYTES) as st:
        yield st


@pytest.fixture
def name() -> str:
    return f"tool-{uuid.uuid4().hex[:8]}.sh"


def _keys(stack: Stack, pattern: str) -> list[bytes]:
    return list(stack.plane.client.scan_iter(f"{stack.plane.keys.prefix}:{pattern}"))


def _entries(stack: Stack, action: str, name: str) -> list[dict]:
    return [{"actor": e.actor, "decision": e.decision, **e.details}
            for e in stack.plane.audit.read() if e.action == action and e.target == name]


def test_add_list_remove_through_the_api(stack: Stack, name: str) -> None:
    content = os.urandom(2 * CHUNK_BYTES + 12345)
    sha256 = hashlib.sha256(content).hexdigest()
    with stack.client() as http:
        added = http.put(f"/library/{name}", content=content,
                         params={"description": "collects things"})
        assert added.status_code == 201, added.text
        assert added.json()["sha256"] == sha256
        assert added.json()["size_bytes"] == len(content)
        listed = {i["name"]: i for i in http.get("/library").json()}
        assert listed[name]["sha256"] == sha256
        assert listed[name]["description"] == "collects things"
        assert listed[name]["added_by"] == "admin"
        keys = stack.plane.keys
        stored = b"".join(stack.plane.client.get(keys.library_blob(sha256, n)) or b""
                          for n in range(3))
        assert stored == content
        assert _keys(stack, "library:upload:*") == []
        removed = http.delete(f"/library/{name}")
        assert removed.status_code == 200, removed.text
        assert removed.json()["content_deleted"] is True
        assert name not in {i["name"] for i in http.get("/library").json()}
    assert _keys(stack, f"library:blob:{sha256}:*") == []
    (entry,) = _entries(stack, "library.added", name)
    assert entry["sha256"] == sha256 and entry["size_bytes"] == len(content)
    assert entry["actor"] == "admin" and entry["decision"] == "allowed"
    (gone,) = _entries(stack, "library.removed", name)
    assert gone["sha256"] == sha256 and gone["content_deleted"] is True


def test_a_non_admin_may_list_but_not_add_or_remove_and_is_audited(stack: Stack,
                                                                    name: str) -> None:
    token = stack.user(f"adv-{uuid.uuid4().hex[:6]}", ["advanced"])
    with stack.client(token) as http:
        denied = http.put(f"/library/{name}", content=b"echo hi\n")
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "permission_denied"
        assert http.get("/library").status_code == 200
        assert http.delete(f"/library/{name}").status_code == 403
    assert _keys(stack, f"library:item:{name}") == []
    denials = [e for e in stack.plane.audit.read()
               if e.action == "access.denied" and e.target == f"/library/{name}"]
    assert [e.details["permission"] for e in denials] == ["admin", "admin"]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_file_over_the_limit_is_refused_and_nothing_is_kept(stack: Stack, name: str,
                                                              declared: bool) -> None:
    content = b"x" * (LIMIT_BYTES + 1)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 256 * 1024):
            yield content[start:start + 256 * 1024]

    with stack.client() as http:
        resp = http.put(f"/library/{name}", content=content if declared else chunks())
    assert resp.status_code == 413, resp.text
    error = resp.json()["error"]
    assert error["code"] == "too_large"
    assert f"at most {LIMIT_BYTES} bytes" in error["message"]
    assert "LR_LIBRARY_MAX_BYTES" in error["hint"]
    assert _keys(stack, "library:upload:*") == []
    assert _keys(stack, f"library:item:{name}") == []
    (refusal,) = _entries(stack, "library.add.refused", name)
    assert refusal["reason"] == "too_large" and refusal["decision"] == "denied"


@pytest.mark.parametrize("bad", ["..", ".bashrc", "-x.sh", "a b.sh", "x" * 129])
def test_a_bad_name_is_refused_and_audited(stack: Stack, bad: str) -> None:
    segment = quote(bad, safe="").replace(".", "%2E")  # ".." must reach the route as a name
    with stack.client() as http:
        resp = http.put(f"/library/{segment}", content=b"echo\n")
    assert resp.status_code == 400, resp.text
    assert "not a library name" in resp.json()["error"]["message"]
    assert _entries(stack, "library.add.refused", bad)[-1]["reason"] == "usage"


def test_the_same_name_again_needs_replace(stack: Stack, name: str) -> None:
    first, second = b"echo one\n", b"echo two\n"
    first_sha = hashlib.sha256(first).hexdigest()
    with stack.client() as http:
        assert http.put(f"/library/{name}", content=first).status_code == 201
        again = http.put(f"/library/{name}", content=second)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "library_item_exists"
        assert "--replace" in again.json()["error"]["hint"]
        assert library_of(stack.plane).get(name).sha256 == first_sha
        assert _keys(stack, "library:upload:*") == []
        replaced = http.put(f"/library/{name}", content=second, params={"replace": "true"})
        assert replaced.status_code == 201, replaced.text
        assert replaced.json()["replaced_sha256"] == first_sha
    assert library_of(stack.plane).get(name).sha256 == hashlib.sha256(second).hexdigest()
    assert _keys(stack, f"library:blob:{first_sha}:*") == []
    assert _entries(stack, "library.add.refused", name)[0]["reason"] == "library_item_exists"


def test_removing_an_unknown_name_is_404_and_audited(stack: Stack, name: str) -> None:
    with stack.client() as http:
        resp = http.delete(f"/library/{name}")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_library_item"
    assert _entries(stack, "library.remove.refused", name)[0]["reason"] == "unknown_library_item"


def test_content_two_names_share_stays_until_the_last_name_goes(redis_client: redis.Redis,
                                                                keys, tmp_path: Path) -> None:
    store = LibraryStore(redis_client, keys, max_bytes=LIMIT_BYTES)
    content = os.urandom(CHUNK_BYTES + 1)
    sha256 = hashlib.sha256(content).hexdigest()
    store.add("a.sh", content, "alice")
    store.add("b.sh", content, "bob")
    assert [i.name for i in store.list()] == ["a.sh", "b.sh"]
    _, deleted = store.remove("a.sh")
    assert not deleted
    assert redis_client.get(keys.library_blob(sha256, 1)) == content[CHUNK_BYTES:]
    _, deleted = store.remove("b.sh")
    assert deleted
    assert list(redis_client.scan_iter(f"{keys.prefix}:library:blob:*")) == []
    with pytest.raises(LibraryItemNotFoundError):
        store.get("a.sh")


def test_an_empty_file_is_a_library_file_too(redis_client: redis.Redis, keys) -> None:
    store = LibraryStore(redis_client, keys, max_bytes=LIMIT_BYTES)
    item, previous = store.add("empty.sh", b"", "alice")
    assert previous is None
    assert (item.size_bytes, item.chunks) == (0, 0)
    assert item.sha256 == hashlib.sha256(b"").hexdigest()
