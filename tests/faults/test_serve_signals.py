"""`lr orchestrator serve` as systemd, Docker and Ctrl-C stop it: its embedded Redis goes with
it (also when serve is SIGKILLed), and the next start finds every user and token again."""

from __future__ import annotations

import json
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from click.testing import CliRunner

from orchestrator.cli.main import main
from tests.serve_process import Serve

#: How long serve and its Redis have to be gone after a stop signal.
STOP_TIMEOUT_S = 10.0


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    # Unix socket paths are limited to ~100 bytes: keep the data directory short.
    data_dir = Path("/tmp") / f"lr-srv-{uuid.uuid4().hex[:8]}"
    server = Serve(data_dir, tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.kill_all()
        shutil.rmtree(data_dir, ignore_errors=True)


def _admin_token(serve: Serve) -> str:
    result = CliRunner().invoke(main, ["--json", "admin", "init"],
                                env={"LR_DATA_DIR": str(serve.data_dir), "LR_REDIS_URL": None,
                                     "LR_KEY_PREFIX": None})
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["token"])


def _whoami(serve: Serve, token: str) -> httpx.Response:
    return httpx.get(f"{serve.url}/whoami", headers={"Authorization": f"Bearer {token}"},
                     timeout=10)


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(proc: psutil.Process) -> bool:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while not _gone(proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _gone(proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_embedded_redis_and_the_data_is_there_next_time(
        serve: Serve, sig: signal.Signals) -> None:
    serve.start()
    token = _admin_token(serve)
    redis_server = serve.redis_child()
    assert serve.proc is not None

    serve.proc.send_signal(sig)
    assert serve.proc.wait(timeout=STOP_TIMEOUT_S) == 0, serve.log.read_text()
    assert _wait_gone(redis_server), "the embedded redis-server outlived serve"
    assert not (serve.data_dir / "redis.sock").exists()
    assert f"lr: stopped by {sig.name}" in serve.log.read_text()

    serve.start()
    assert serve.redis_child().pid != redis_server.pid
    resp = _whoami(serve, token)
    assert resp.status_code == 200, resp.text
    assert resp.json()["user"] == "admin"


def test_sigkill_of_serve_takes_its_redis_along_and_the_next_serve_has_the_data(
        serve: Serve) -> None:
    serve.start()
    token = _admin_token(serve)
    redis_server = serve.redis_child()
    assert serve.proc is not None

    serve.proc.kill()
    serve.proc.wait()
    # Told by the kernel (parent-death signal): a clean shutdown, its file flushed.
    assert _wait_gone(redis_server), "the embedded redis-server outlived a SIGKILLed serve"

    serve.start()
    resp = _whoami(serve, token)
    assert resp.status_code == 200, resp.text
