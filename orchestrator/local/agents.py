"""Start and stop `lr-agent` processes on this machine (the demo and the tests use it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO

import redis

from tasks import clock
from tasks.keys import Keys

#: How long a starting agent has to register and start consuming.
AGENT_START_TIMEOUT_S = 30.0


class LocalAgent:
    """One `lr-agent --device-id ID` child process (`public_key_file`: the key it trusts)."""

    def __init__(self, device_id: str, redis_url: str, *, key_prefix: str = "lr",
                 log_path: Path | None = None, env: dict[str, str] | None = None,
                 concurrency: int = 2, public_key_file: Path | None = None,
                 command_prefix: Sequence[str] = ()) -> None:
        self.device_id = device_id
        self.redis_url = redis_url
        self.keys = Keys(key_prefix)
        self.log_path = log_path
        self.concurrency = concurrency
        #: Run before the agent's own argv, e.g. `ip netns exec NS` (tests of isolation).
        self.command_prefix = list(command_prefix)
        self.env = {**os.environ, "LR_REDIS_URL": redis_url, "LR_KEY_PREFIX": key_prefix,
                    **(env or {})}
        if public_key_file is not None:
            # The orchestrator's public key: the agent runs only what that key signed.
            self.env["LR_ORCHESTRATOR_PUBLIC_KEY_FILE"] = str(public_key_file)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalAgent:
        """Start the agent and wait until its worker is ready to consume."""
        client = redis.Redis.from_url(self.redis_url)
        client.delete(self.keys.device(self.device_id))
        argv = [*self.command_prefix, sys.executable, "-m", "worker_agent.main",
                "--device-id", self.device_id,
                "--concurrency", str(self.concurrency), "--loglevel", "INFO"]
        log: AbstractContextManager[IO[bytes] | int] = (
            open(self.log_path, "ab") if self.log_path else nullcontext(subprocess.DEVNULL))
        with log as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lr-agent {self.device_id} exited with {self.proc.returncode}")
            seen = client.hget(self.keys.device(self.device_id), "last_seen")
            if seen and clock.now() - float(seen) < 60:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"lr-agent {self.device_id} did not register within 30 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then kill the whole process group if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> LocalAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
