"""A redis-server of a test's own (TCP, password, append-only file) that it stops and starts."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import redis

from config import find_redis_server
from config.embedded import stop_process
from orchestrator.api.server import free_port

#: The password of every throwaway Redis (a test checks it never shows).
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


class ThrowawayRedis:
    """A redis-server of this test's own on a TCP port, with a password and an append-only
    file, that the test stops and starts again on the same port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", PASSWORD, "--dir", str(self.data_dir), "--save", "",
             "--appendonly", "yes", "--appendfilename", "outage.aof"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("the throwaway redis did not start")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)  # SIGTERM: it flushes its file
            self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, only what it wrote to its file survives."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
