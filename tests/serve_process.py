"""`lr orchestrator serve` as a process of its own for tests: started on a free port, waited
for until it answers, killed (with any embedded Redis of its data directory) afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from orchestrator.api.server import free_port

REPO = Path(__file__).resolve().parents[1]
#: How long serve has to answer /health after it was started.
START_TIMEOUT_S = 45.0


class Serve:
    """`lr orchestrator serve` in a subprocess of its own, on an isolated data directory
    (and, without LR_REDIS_URL in `env`, its own embedded Redis)."""

    def __init__(self, data_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log = log
        #: LR_* settings of this serve (say LR_REDIS_URL, to run on a Redis of the test's).
        self.extra_env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LR_")}
        env.update(LR_DATA_DIR=str(self.data_dir), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
                   **self.extra_env)
        return env

    def start(self) -> Serve:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from orchestrator.cli.main import main; main()",
                 "orchestrator", "serve", "--port", str(self.port)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not answer: {self.log.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def redis_child(self) -> psutil.Process:
        assert self.proc is not None
        (child,) = [c for c in psutil.Process(self.proc.pid).children()
                    if "redis-server" in c.name()]
        return child

    def kill_all(self) -> None:
        """Whatever is left (a failed test): serve, and any redis-server on our data dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for proc in psutil.process_iter(["name", "cmdline"]):
            if "redis-server" in (proc.info["name"] or "") and \
                    str(self.data_dir) in " ".join(proc.info["cmdline"] or []):
                proc.kill()
