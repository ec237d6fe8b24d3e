"""`lr admin init` against a real Redis: one admin, a token that works and is stored only hashed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from config import EmbeddedRedis
from orchestrator.audit.log import AuditLog
from orchestrator.cli.main import main
from orchestrator.state.identity import authenticate, hash_token
from tasks.keys import Keys
from tasks.signing import Verifier, generate_keypair
from tests.redis_dump import dump_prefix

pytestmark = pytest.mark.integration


@pytest.fixture
def env(env: dict[str, str | None], tmp_path: Path) -> dict[str, str | None]:
    """The bootstrap environment with the orchestrator's signing keys made: the first admin's
    audit entry is signed like every other the orchestrator writes."""
    generate_keypair(tmp_path / "lr-home" / "keys")
    return env


def test_init_prints_a_token_that_authenticates_and_is_stored_hashed(
    env: dict[str, str | None], redis_client: redis.Redis, keys: Keys, key_prefix: str
) -> None:
    result = CliRunner().invoke(main, ["--json", "admin", "init"], env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["user"] == "admin"
    user = authenticate(redis_client, keys, out["token"])
    assert user.name == "admin" and user.roles == ["admin"]
    stored = dump_prefix(redis_client, key_prefix)
    assert out["token"].encode() not in stored
    assert hash_token(out["token"]).encode() in stored


def test_init_is_audited_without_the_token(
    env: dict[str, str | None], redis_client: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["--json", "admin", "init", "--user", "alice"], env=env)
    assert result.exit_code == 0, result.output
    token = json.loads(result.stdout)["token"]
    log = AuditLog(redis_client, keys)
    (entry,) = [e for e in log.read() if e.action == "admin.init"]
    assert entry.target == "alice" and entry.details["user"] == "alice"
    assert token not in entry.model_dump_json()
    assert entry.sig is not None  # signed by the orchestrator's key
    public = tmp_path / "lr-home" / "keys" / "orchestrator-signing.pub"
    assert log.verify(Verifier.from_file(public)).ok


def test_a_second_init_is_refused_with_exit_2(env: dict[str, str | None]) -> None:
    first = CliRunner().invoke(main, ["admin", "init"], env=env)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip().startswith("lr_")
    assert "cannot be shown again" in first.stderr
    second = CliRunner().invoke(main, ["admin", "init", "--user", "mallory"], env=env)
    assert second.exit_code == 2, second.output
    (line,) = second.stderr.splitlines()
    assert line.startswith("lr: users already exist")
    assert "lr_" not in second.stdout


def test_concurrent_inits_make_exactly_one_admin(
    env: dict[str, str | None], redis_client: redis.Redis, keys: Keys
) -> None:
    lr = [sys.executable, "-m", "orchestrator.cli.main"]
    full_env = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    for name in ("LR_API_URL", "LR_TOKEN"):
        full_env.pop(name, None)
    procs = [subprocess.Popen([*lr, "admin", "init", "--user", f"root{i}"], env=full_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    for p in procs:
        p.stdout.close()  # type: ignore[union-attr]
        p.stderr.close()  # type: ignore[union-attr]
    assert codes == [0, 2, 2, 2]
    assert len(redis_client.smembers(keys.users)) == 1


def test_init_without_a_signing_key_says_to_make_one_and_creates_no_user(
    env: dict[str, str | None], tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    (tmp_path / "lr-home" / "keys" / "orchestrator-signing.key").unlink()
    result = CliRunner().invoke(main, ["admin", "init"], env=env)
    assert result.exit_code == 10, result.output
    assert "lr admin keys init" in result.stderr
    assert not redis_client.smembers(keys.users) and redis_client.xlen(keys.audit) == 0


def test_init_without_any_redis_says_how_to_get_one(tmp_path: Path) -> None:
    env = {"LR_REDIS_URL": None, "LR_DATA_DIR": str(tmp_path / "empty")}
    result = CliRunner().invoke(main, ["admin", "init"], env=env)
    assert result.exit_code == 10, result.output
    assert result.stderr.strip() == (
        "lr: no Redis: start 'lr orchestrator serve' (which starts the embedded one) "
        "or set LR_REDIS_URL"
    )


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """A data directory whose embedded Redis runs (as `lr orchestrator serve` leaves it)."""
    # Unix socket paths are limited to ~100 bytes: keep the directory short.
    home = Path("/tmp") / f"lr-init-{uuid.uuid4().hex[:8]}"
    try:
        with EmbeddedRedis(home):
            yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_init_finds_the_embedded_redis_of_the_data_dir(embedded_home: Path) -> None:
    generate_keypair(embedded_home / "keys")
    env = {"LR_REDIS_URL": None, "LR_DATA_DIR": str(embedded_home), "LR_KEY_PREFIX": "lr"}
    result = CliRunner().invoke(main, ["--json", "admin", "init"], env=env)
    assert result.exit_code == 0, result.output
    client = redis.Redis(unix_socket_path=str(embedded_home / "redis.sock"))
    try:
        assert authenticate(client, Keys("lr"), json.loads(result.stdout)["token"]).name == "admin"
    finally:
        client.close()
