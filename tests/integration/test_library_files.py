"""The agent's side of library files against a real Redis: what it refuses, it never writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import redis

from orchestrator.files.library import CHUNK_BYTES, LibraryStore
from tasks.commands.library import PutArgs, RunScriptArgs
from tasks.errors import LibraryIntegrityError
from tasks.keys import Keys
from worker_agent.context import CommandContext
from worker_agent.library_files import run_put
from worker_agent.scripts import run_runscript


@pytest.fixture
def ctx(redis_client: redis.Redis, keys: Keys, tmp_path: Path) -> CommandContext:
    return CommandContext(device_id="lib-test", cwd=str(tmp_path), client=redis_client,
                          keys=keys)


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys) -> LibraryStore:
    return LibraryStore(redis_client, keys, max_bytes=8 * CHUNK_BYTES)


def test_arguments_without_the_signed_sha256_are_refused(ctx: CommandContext,
                                                         tmp_path: Path) -> None:
    with pytest.raises(LibraryIntegrityError, match="no signed sha256"):
        run_put(PutArgs(name="x.sh", dest=str(tmp_path / "x.sh")), ctx)
    with pytest.raises(LibraryIntegrityError, match="no signed sha256"):
        run_runscript(RunScriptArgs(name="x.sh", size_bytes=3), ctx)
    assert list(tmp_path.iterdir()) == []


def test_content_removed_from_the_broker_is_refused(ctx: CommandContext, store: LibraryStore,
                                                    tmp_path: Path) -> None:
    content = os.urandom(CHUNK_BYTES * 2)
    item, _ = store.add("gone.bin", content, "admin")
    ctx.client.delete(ctx.keys.library_blob(item.sha256, 1))
    args = PutArgs(name="gone.bin", sha256=item.sha256, size_bytes=item.size_bytes,
                   dest=str(tmp_path / "out"))
    with pytest.raises(LibraryIntegrityError, match="chunk 1 missing"):
        run_put(args, ctx)
    assert list(tmp_path.iterdir()) == []


def test_content_longer_or_shorter_than_signed_is_refused(ctx: CommandContext,
                                                          store: LibraryStore,
                                                          tmp_path: Path) -> None:
    item, _ = store.add("a.sh", b"echo a\n", "admin")
    for size in (item.size_bytes - 1, item.size_bytes + 1):
        args = PutArgs(name="a.sh", sha256=item.sha256, size_bytes=size,
                       dest=str(tmp_path / "out"))
        with pytest.raises(LibraryIntegrityError):
            run_put(args, ctx)
    assert list(tmp_path.iterdir()) == []


def test_a_signed_sha256_other_than_the_contents_is_refused(ctx: CommandContext,
                                                            store: LibraryStore,
                                                            tmp_path: Path) -> None:
    item, _ = store.add("a.sh", b"echo a\n", "admin")
    store.add("b.sh", b"echo b\n", "admin")  # same size, other content
    wrong = hashlib.sha256(b"echo b\n").hexdigest()
    # Chunks of b.sh under a.sh's signed hash would be what a swapped blob looks like.
    ctx.client.set(ctx.keys.library_blob(item.sha256, 0), b"echo b\n")
    args = PutArgs(name="a.sh", sha256=item.sha256, size_bytes=item.size_bytes,
                   dest=str(tmp_path / "out"))
    with pytest.raises(LibraryIntegrityError, match=f"sha256 {wrong}"):
        run_put(args, ctx)
    assert list(tmp_path.iterdir()) == []
