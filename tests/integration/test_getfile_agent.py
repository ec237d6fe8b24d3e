"""The agent's getfile handler on real files and a real Redis, the test playing the receiver."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config import Settings
from tasks.commands.acquisition import GetFileArgs, GetFileResult
from tasks.errors import (
    FileChangedError,
    LiveResponseError,
    TransferError,
    TransferStalledError,
)
from tasks.keys import Keys
from tasks.transfer import KIND_BEGIN, KIND_CHUNK, KIND_END, KIND_ERROR, TransferEntry, parse_entry
from tests.privilege import run_as_nobody
from worker_agent.acquisition import run_getfile
from worker_agent.context import CommandContext

CHUNK = 64 * 1024


class Run:
    """run_getfile in a thread: the test reads the stream meanwhile, as the orchestrator does."""

    def __init__(self, call: Callable[[], GetFileResult]) -> None:
        self.result: GetFileResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], GetFileResult]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def join(self, timeout_s: float = 30) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the handler did not return"


@pytest.fixture
def make_ctx(redis_client: redis.Redis, keys: Keys, tmp_path: Path
             ) -> Callable[..., CommandContext]:
    def make(**settings: Any) -> CommandContext:
        settings.setdefault("transfer_chunk_bytes", CHUNK)
        return CommandContext("dev-x", cwd=str(tmp_path), command_id=uuid.uuid4().hex,
                              client=redis_client, keys=keys, settings=Settings(**settings))
    return make


def read_entries(client: redis.Redis, key: str, *, until: int | None = None,
                 on_entry: Callable[[TransferEntry], None] | None = None,
                 timeout_s: float = 30) -> list[TransferEntry]:
    """Consume (read, then delete) entries up to the end or error marker, or `until` of them."""
    entries: list[TransferEntry] = []
    last: bytes | str = "0-0"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply: Any = client.xread({key: last}, count=1, block=100)
        for entry_id, raw in reply[0][1] if reply else []:
            last = entry_id
            entry = parse_entry(raw)
            entries.append(entry)
            client.xdel(key, entry_id)
            if on_entry is not None:
                on_entry(entry)
            if entry.kind in (KIND_END, KIND_ERROR) or len(entries) == until:
                return entries
    raise AssertionError(f"no end of the transfer within {timeout_s} s: {entries[-3:]}")


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_sends_the_file_in_fixed_chunks_with_an_end_sha256_equal_to_sha256sum(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = write_random(tmp_path / "invoice2025.exe", 3 * CHUNK + 1234)
    ctx = make_ctx()
    run = Run(lambda: run_getfile(GetFileArgs(path="invoice2025.exe"), ctx))
    entries = read_entries(redis_client, ctx.keys.xfer(ctx.command_id))
    run.join()
    expected = subprocess.run(["sha256sum", str(tmp_path / "invoice2025.exe")],
                              capture_output=True, text=True, check=True).stdout.split()[0]
    assert [e.kind for e in entries] == [KIND_BEGIN] + [KIND_CHUNK] * 4 + [KIND_END]
    assert entries[0].size_bytes == len(data) and entries[0].chunk_bytes == CHUNK
    chunks = entries[1:-1]
    assert [c.offset for c in chunks] == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert [len(c.data) for c in chunks] == [CHUNK, CHUNK, CHUNK, 1234]
    assert b"".join(c.data for c in chunks) == data
    assert entries[-1].sha256 == expected and entries[-1].chunks == 4
    assert run.result is not None
    assert run.result.sha256 == expected and run.result.size_bytes == len(data)
    assert run.result.path == str(tmp_path / "invoice2025.exe")
    assert run.result.resolved_path is None


def test_an_empty_file_is_a_begin_and_an_end_with_the_empty_sha256(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path
) -> None:
    (tmp_path / "empty").touch()
    ctx = make_ctx()
    run = Run(lambda: run_getfile(GetFileArgs(path="empty"), ctx))
    entries = read_entries(redis_client, ctx.keys.xfer(ctx.command_id))
    run.join()
    assert [e.kind for e in entries] == [KIND_BEGIN, KIND_END]
    assert entries[-1].sha256 == hashlib.sha256(b"").hexdigest() and entries[-1].chunks == 0


def test_a_symlink_is_followed_and_the_file_read_is_named(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = write_random(tmp_path / "real.bin", 1000)
    (tmp_path / "link").symlink_to("real.bin")
    ctx = make_ctx()
    run = Run(lambda: run_getfile(GetFileArgs(path="link"), ctx))
    entries = read_entries(redis_client, ctx.keys.xfer(ctx.command_id))
    run.join()
    assert entries[1].data == data
    assert run.result is not None and run.result.resolved_path == str(tmp_path / "real.bin")
    assert entries[0].resolved_path == str(tmp_path / "real.bin")


def test_never_more_than_the_window_waits_unread_in_the_stream(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = write_random(tmp_path / "big.bin", 20 * CHUNK)
    ctx = make_ctx(transfer_window_chunks=3)
    key = ctx.keys.xfer(ctx.command_id)
    run = Run(lambda: run_getfile(GetFileArgs(path="big.bin"), ctx))
    # Nobody reads: the sender fills the window and waits there.
    deadline = time.monotonic() + 10
    while redis_client.xlen(key) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert redis_client.xlen(key) == 3
    backlog: list[int] = []
    entries = read_entries(redis_client, key,
                           on_entry=lambda _: backlog.append(int(redis_client.xlen(key))))
    run.join()
    assert max(backlog) <= 3
    assert b"".join(e.data for e in entries if e.kind == KIND_CHUNK) == data


def test_a_receiver_that_reads_nothing_is_given_up_and_the_stream_deleted(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path
) -> None:
    write_random(tmp_path / "big.bin", 10 * CHUNK)
    ctx = make_ctx(transfer_window_chunks=2, transfer_stall_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(TransferStalledError, match="read nothing for 0.3 s"):
        run_getfile(GetFileArgs(path="big.bin"), ctx)
    assert time.monotonic() - started < 5
    assert not redis_client.exists(ctx.keys.xfer(ctx.command_id))


def test_the_sender_stops_when_the_receiver_deletes_the_stream(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path
) -> None:
    write_random(tmp_path / "big.bin", 10 * CHUNK)
    ctx = make_ctx(transfer_window_chunks=1)
    key = ctx.keys.xfer(ctx.command_id)
    run = Run(lambda: run_getfile(GetFileArgs(path="big.bin"), ctx))
    read_entries(redis_client, key, until=2)
    redis_client.delete(key)
    run.join()
    assert isinstance(run.error, TransferError)
    assert "stopped receiving" in str(run.error)
    time.sleep(0.1)
    assert not redis_client.exists(key)


@pytest.mark.parametrize("change", ["deleted", "truncated", "appended", "rewritten"])
def test_a_file_changed_mid_transfer_ends_with_an_error_marker(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path,
    change: str,
) -> None:
    subject = tmp_path / "live.log"
    write_random(subject, 10 * CHUNK)
    ctx = make_ctx(transfer_window_chunks=1)
    key = ctx.keys.xfer(ctx.command_id)
    run = Run(lambda: run_getfile(GetFileArgs(path="live.log"), ctx))
    first = read_entries(redis_client, key, until=2)  # begin and the first chunk
    assert [e.kind for e in first] == [KIND_BEGIN, KIND_CHUNK]
    if change == "deleted":
        subject.unlink()
    elif change == "truncated":
        os.truncate(subject, CHUNK)
    elif change == "appended":
        with subject.open("ab") as f:
            f.write(b"more")
    else:  # same size, new content and mtime
        with subject.open("r+b") as f:
            f.write(b"X" * 16)
        os.utime(subject, (1, 1))
    rest = read_entries(redis_client, key)
    run.join()
    assert rest[-1].kind == KIND_ERROR and rest[-1].code == FileChangedError.code
    assert "during transfer" in rest[-1].message
    assert all(e.kind == KIND_CHUNK for e in rest[:-1])
    assert isinstance(run.error, FileChangedError)


@pytest.fixture
def specials(tmp_path: Path) -> Iterator[Path]:
    """tmp_path with a FIFO, a listening unix socket, a directory and a dangling symlink."""
    os.mkfifo(tmp_path / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    (tmp_path / "subdir").mkdir()
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "big.bin").write_bytes(b"x" * 5000)
    try:
        yield tmp_path
    finally:
        sock.close()


@pytest.mark.parametrize(("path", "settings", "code", "words"), [
    ("missing.bin", {}, "path_not_found", "no such file"),
    ("subdir", {}, "not_a_file", "is a directory"),
    ("pipe", {}, "not_a_file", "(fifo)"),
    ("sock", {}, "not_a_file", "(socket)"),
    ("/dev/null", {}, "not_a_file", "(char)"),
    ("/dev/zero", {}, "not_a_file", "(char)"),
    ("dangling", {}, "path_not_found", "a symlink to 'nowhere'"),
    ("big.bin", {"getfile_max_bytes": 4999}, "file_too_large", "over the getfile limit of 4999"),
])
def test_refusals_come_before_any_byte_moves(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, specials: Path,
    path: str, settings: dict[str, Any], code: str, words: str,
) -> None:
    ctx = make_ctx(**settings)
    with pytest.raises(LiveResponseError) as caught:
        run_getfile(GetFileArgs(path=path), ctx)
    assert caught.value.code == code
    assert words in caught.value.message
    assert not redis_client.exists(ctx.keys.xfer(ctx.command_id))


def test_the_orchestrators_signed_limit_applies_when_lower_than_the_agents(
    make_ctx: Callable[..., CommandContext], redis_client: redis.Redis, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"y" * 100)
    ctx = make_ctx()
    with pytest.raises(LiveResponseError) as caught:
        run_getfile(GetFileArgs(path="f.bin", max_bytes=99), ctx)
    assert caught.value.code == "file_too_large"
    assert not redis_client.exists(ctx.keys.xfer(ctx.command_id))


@pytest.fixture
def unreadable_file() -> Iterator[Path]:
    """A root-only file in a directory `nobody` can reach."""
    root = Path(tempfile.mkdtemp(prefix="lr-getfile-", dir="/tmp"))
    try:
        root.chmod(0o755)
        (root / "secret.bin").write_bytes(b"s" * 100)
        (root / "secret.bin").chmod(0o600 if os.geteuid() == 0 else 0o000)
        yield root / "secret.bin"
    finally:
        shutil.rmtree(root)


def test_an_unreadable_file_is_refused_before_any_byte_moves(
    redis_url: str, keys: Keys, redis_client: redis.Redis, unreadable_file: Path
) -> None:
    command_id = uuid.uuid4().hex

    def attempt() -> str:
        ctx = CommandContext("dev-x", command_id=command_id,
                             client=redis.Redis.from_url(redis_url), keys=keys,
                             settings=Settings())
        try:
            run_getfile(GetFileArgs(path=str(unreadable_file)), ctx)
        except LiveResponseError as exc:
            return json.dumps(exc.to_dict())
        return json.dumps({"code": "read it"})

    error = json.loads(run_as_nobody(attempt) if os.geteuid() == 0 else attempt())
    assert error["code"] == "endpoint_permission_denied"
    assert str(unreadable_file) in error["message"]
    assert not redis_client.exists(keys.xfer(command_id))
