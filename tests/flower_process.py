"""A Flower process for tests: `lr flower` (or a stock `celery flower`) on a free port,
stopped afterwards whatever happened, and an HTTP client of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from orchestrator.api.server import free_port

#: How long a starting Flower has to answer its health check.
FLOWER_START_TIMEOUT_S = 30.0
#: The login the tests' Flowers require.
USER, PASSWORD = "ops", "flower-test-password"


@dataclass
class RunningFlower:
    """One Flower process: where it listens, its log, an authenticated client."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def client(self, auth: tuple[str, str] | None = (USER, PASSWORD)) -> httpx.Client:
        """An HTTP client of this Flower, logged in as `auth` (None: no credentials)."""
        return httpx.Client(base_url=self.url, auth=auth, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def lr_flower_argv(port: int) -> list[str]:
    """`lr flower` on `port`, run by this interpreter from the source tree."""
    return [sys.executable, "-m", "orchestrator.cli.main", "flower", "--port", str(port)]


def stock_flower_argv(broker_url: str, port: int) -> list[str]:
    """Flower as shipped, misconfigured on purpose: not read-only, events enabled."""
    celery = str(Path(sys.executable).with_name("celery"))
    return [celery, "--broker", broker_url, "flower", f"--port={port}", "--address=127.0.0.1",
            f"--basic_auth={USER}:{PASSWORD}"]


@contextmanager
def flower_process(argv_for_port: Callable[[int], Sequence[str]], env: dict[str, str],
                   log_path: Path) -> Iterator[RunningFlower]:
    """Start `argv_for_port(port)` on a free port, wait for /healthcheck, stop it on exit."""
    port = free_port()
    argv: Sequence[str] = argv_for_port(port)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        running = RunningFlower(proc, f"http://127.0.0.1:{port}", log_path)
        _wait_healthy(running)
        yield running
    finally:
        _stop(proc)


def _wait_healthy(flower: RunningFlower) -> None:
    deadline = time.monotonic() + FLOWER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if flower.proc.poll() is not None:
            raise AssertionError(f"Flower exited with {flower.proc.returncode}:\n{flower.log()}")
        try:
            if httpx.get(f"{flower.url}/healthcheck", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"Flower did not answer within {FLOWER_START_TIMEOUT_S} s:\n"
                         f"{flower.log()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
