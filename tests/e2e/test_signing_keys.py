"""The signing keys as an operator meets them: `lr admin keys init`, serve and demo bootstrap."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from config import EmbeddedRedis, Settings
from config.embedded import owner_alive
from orchestrator.api.server import free_port
from orchestrator.audit.log import AuditLog
from orchestrator.cli.main import main
from orchestrator.plane import ControlPlane
from tasks.errors import ConfigurationError
from tasks.keys import Keys
from tasks.signing import Signer, Verifier
from tests.redis_dump import dump_prefix

pytestmark = pytest.mark.integration


def test_keys_init_writes_a_usable_pair_and_audits_only_its_id(
    env: dict[str, str | None], tmp_path: Path, redis_client: redis.Redis, keys: Keys,
    key_prefix: str,
) -> None:
    result = CliRunner().invoke(main, ["--json", "admin", "keys", "init"], env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    private, public = Path(out["private_key"]), Path(out["public_key"])
    assert private == tmp_path / "lr-home" / "keys" / "orchestrator-signing.key"
    assert public == tmp_path / "lr-home" / "keys" / "orchestrator-signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert Signer.from_file(private).key_id == Verifier.from_file(public).key_id == out["key_id"]

    log = AuditLog(redis_client, keys)
    (entry,) = [e for e in log.read() if e.action == "keys.created"]
    assert entry.target == out["key_id"] and entry.details["key_id"] == out["key_id"]
    stored = dump_prefix(redis_client, key_prefix)
    for pem in (private.read_bytes(), public.read_bytes()):
        body = b"".join(pem.splitlines()[1:-1])  # the base64 key material
        assert body not in stored
    assert entry.sig is not None and entry.sig.startswith(out["key_id"] + ":")
    assert log.verify(Verifier.from_file(public)).ok


def test_keys_init_refuses_to_replace_keys_without_force(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    directory = tmp_path / "k"
    first = CliRunner().invoke(main, ["--json", "admin", "keys", "init", "--dir", str(directory)],
                               env=env)
    assert first.exit_code == 0, first.output
    key_id = json.loads(first.stdout)["key_id"]
    again = CliRunner().invoke(main, ["admin", "keys", "init", "--dir", str(directory)], env=env)
    assert again.exit_code == 2, again.output
    assert again.stderr.startswith("lr: signing keys already exist")
    assert "--force" in again.stderr
    assert Signer.from_file(directory / "orchestrator-signing.key").key_id == key_id
    forced = CliRunner().invoke(
        main, ["admin", "keys", "init", "--dir", str(directory), "--force"], env=env)
    assert forced.exit_code == 0, forced.output
    new_id = Signer.from_file(directory / "orchestrator-signing.key").key_id
    assert new_id != key_id and f"created signing key pair {new_id}" in forced.stdout
    assert "LR_SIGNING_KEY_FILE=" in forced.stderr  # not the default place: say how to use it


def test_keys_init_with_an_unreachable_redis_creates_nothing(tmp_path: Path) -> None:
    env = {"LR_REDIS_URL": "redis://127.0.0.1:1/0", "LR_DATA_DIR": str(tmp_path / "empty")}
    result = CliRunner().invoke(main, ["admin", "keys", "init"], env=env)
    assert result.exit_code == 10, result.output
    assert result.stderr.startswith("lr: cannot reach Redis at redis://127.0.0.1:1/0")
    assert not (tmp_path / "empty" / "keys").exists()


def test_keys_init_before_any_serve_audits_in_the_embedded_redis_it_starts(
    short_home: Path,
) -> None:
    env = {"LR_REDIS_URL": None, "LR_DATA_DIR": str(short_home), "LR_KEY_PREFIX": "lr",
           "LR_SIGNING_KEY_FILE": None, "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": None}
    result = CliRunner().invoke(main, ["--json", "admin", "keys", "init"], env=env)
    assert result.exit_code == 0, result.output
    key_id = json.loads(result.stdout)["key_id"]
    # Started for the entry and stopped after it: nothing is left running.
    assert not owner_alive(short_home) and not (short_home / "redis.sock").exists()
    with EmbeddedRedis(short_home, persist=True) as server:  # as serve starts it later
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        try:
            log = AuditLog(client, Keys("lr"))
            (entry,) = [e for e in log.read() if e.action == "keys.created"]
            assert entry.target == key_id
            public = Verifier.from_file(short_home / "keys" / "orchestrator-signing.pub")
            assert public.key_id == key_id and log.verify(public).ok
        finally:
            client.close()


def test_the_control_plane_without_a_key_says_to_run_keys_init(
    redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, signing_key_file=None)
    with pytest.raises(ConfigurationError) as caught:
        ControlPlane.from_settings(settings)
    assert str(tmp_path / "keys" / "orchestrator-signing.key") in caught.value.message
    assert "lr admin keys init" in (caught.value.hint or "")


def test_serve_with_an_external_redis_and_no_key_fails_clearly(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main, ["orchestrator", "serve", "--port", str(free_port())], env=env)
    assert result.exit_code == 10, result.output
    assert "lr admin keys init" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "lr-home" / "keys").exists()  # external Redis: never made silently


def test_demo_with_an_external_redis_and_no_key_fails_clearly(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["demo"], env=env)
    assert result.exit_code == 10, result.output
    assert "lr admin keys init" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "lr-home" / "keys").exists()


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A data directory short enough for the embedded Redis's unix socket."""
    home = Path("/tmp") / f"lr-keys-{uuid.uuid4().hex[:8]}"
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_serve_with_the_embedded_redis_creates_the_keys_once(short_home: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LR_REDIS_URL", "LR_SIGNING_KEY_FILE", "LR_ORCHESTRATOR_PUBLIC_KEY_FILE")}
    env["LR_DATA_DIR"] = str(short_home)
    lr = str(Path(sys.executable).with_name("lr"))

    def serve_once() -> str:
        port = free_port()
        proc = subprocess.Popen([lr, "orchestrator", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()[1]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                pytest.fail("the orchestrator did not answer within 60 s")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        return err

    first = serve_once()
    private = short_home / "keys" / "orchestrator-signing.key"
    key_id = Signer.from_file(private).key_id
    assert f"created signing key {private} (key id {key_id})" in first
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    second = serve_once()
    assert "created signing key" not in second  # kept, not replaced
    assert Signer.from_file(private).key_id == key_id
