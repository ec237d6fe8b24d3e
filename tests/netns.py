"""A network namespace joined to the host by a veth pair, and a Redis on the host's end of it.

Tests that change a firewall do it inside such a namespace, on the pair's own test-only
addresses (10.231.X.0/30), so the machine's own network is never touched.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from config.embedded import find_redis_server, stop_process
from orchestrator.api.server import free_port
from tasks.commands.isolation import ISOLATION_TABLE

#: First two octets of the /30 networks the pairs use (a private range nothing here routes).
NET_PREFIX = "10.231"
#: How long a Redis started for a namespace has to answer PING.
REDIS_START_TIMEOUT_S = 10.0
#: How long a connect from inside the namespace may take before it counts as blocked.
CONNECT_TIMEOUT_S = 1.5

_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError as exc:
    print(type(exc).__name__, exc)
    sys.exit(1)
"""


def _tool(name: str) -> str:
    """Absolute path of a tool (argv[0] must not depend on a child's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise FileNotFoundError(name)
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def unavailable_reason() -> str | None:
    """Why this machine cannot run namespace tests (missing tool, no privilege), or None."""
    for tool in ("ip", "nft"):
        try:
            _tool(tool)
        except FileNotFoundError:
            package = "iproute2" if tool == "ip" else "nftables"
            return f"'{tool}' is not installed (Debian package {package}; .ci/run installs it)"
    probe = f"lrt-probe-{uuid.uuid4().hex[:6]}"
    done = _run([_tool("ip"), "netns", "add", probe])
    if done.returncode != 0:
        return (f"cannot create a network namespace ({done.stderr.strip()}): "
                "these tests need root or CAP_SYS_ADMIN + CAP_NET_ADMIN")
    _run([_tool("ip"), "netns", "delete", probe])
    return None


@dataclass(frozen=True)
class Netns:
    """A namespace `name` whose interface has `ns_addr`; the host's end has `host_addr`."""

    name: str
    host_addr: str
    ns_addr: str

    def exec_argv(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace."""
        return [_tool("ip"), "netns", "exec", self.name, *argv]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace and return what it did."""
        return _run(self.exec_argv(*argv))

    def can_connect(self, host: str, port: int) -> bool:
        """True when a TCP connect from inside the namespace to host:port succeeds."""
        done = self.run(sys.executable, "-c", _PROBE, host, str(port), str(CONNECT_TIMEOUT_S))
        return done.returncode == 0

    def has_isolation_table(self) -> bool:
        """True when our nftables table exists inside the namespace."""
        done = self.run(_tool("nft"), "list", "table", "inet", ISOLATION_TABLE)
        if done.returncode != 0 and "No such file or directory" not in done.stderr:
            raise RuntimeError(f"nft list failed in {self.name}: {done.stderr.strip()}")
        return done.returncode == 0


def _free_subnet() -> int:
    """A third octet X such that no interface here has an address in NET_PREFIX.X.0/30."""
    used = _run([_tool("ip"), "-4", "-o", "addr", "show"]).stdout
    choices = [x for x in range(256) if f" {NET_PREFIX}.{x}." not in used]
    return random.choice(choices)


@contextmanager
def veth_netns() -> Iterator[Netns]:
    """A fresh namespace `lrt-<hex>` joined by a veth pair; deleted on exit, even on failure."""
    ip = _tool("ip")
    tag = uuid.uuid4().hex[:6]
    name, host_if, ns_if = f"lrt-{tag}", f"lrt{tag}h", f"lrt{tag}n"
    x = _free_subnet()
    host_addr, ns_addr = f"{NET_PREFIX}.{x}.1", f"{NET_PREFIX}.{x}.2"
    steps = [
        [ip, "netns", "add", name],
        [ip, "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
        [ip, "link", "set", ns_if, "netns", name],
        [ip, "addr", "add", f"{host_addr}/30", "dev", host_if],
        [ip, "link", "set", host_if, "up"],
        [ip, "-n", name, "addr", "add", f"{ns_addr}/30", "dev", ns_if],
        [ip, "-n", name, "link", "set", ns_if, "up"],
        [ip, "-n", name, "link", "set", "lo", "up"],
    ]
    try:
        for argv in steps:
            done = _run(argv)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        yield Netns(name, host_addr, ns_addr)
    finally:
        # Deleting the namespace deletes its end of the pair, and with it the host's end.
        _run([ip, "netns", "delete", name])
        _run([ip, "link", "delete", host_if])


@contextmanager
def loopback_netns() -> Iterator[list[str]]:
    """A fresh namespace with only loopback, up: yields the argv prefix that runs a program in
    it (its ports are its own, so a server may take a fixed one). Where no namespace can be
    made (no `ip`, no privilege), yields [] and programs share this machine's network."""
    name = f"lrt-{uuid.uuid4().hex[:6]}"
    try:
        ip = _tool("ip")
    except FileNotFoundError:
        yield []
        return
    if _run([ip, "netns", "add", name]).returncode != 0:
        yield []
        return
    try:
        done = _run([ip, "-n", name, "link", "set", "lo", "up"])
        if done.returncode != 0:
            raise RuntimeError(f"cannot bring up lo in {name}: {done.stderr.strip()}")
        yield [ip, "netns", "exec", name]
    finally:
        _run([ip, "netns", "delete", name])


@contextmanager
def redis_on(address: str, data_dir: Path) -> Iterator[str]:
    """A private Redis listening on `address` only; yields its URL and stops it on exit."""
    port = free_port(address)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [find_redis_server(), "--bind", address, "--port", str(port),
            "--protected-mode", "no", "--save", "", "--appendonly", "no",
            "--dir", str(data_dir), "--daemonize", "no"]
    with open(data_dir / "redis.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://{address}:{port}/0"
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=1).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis on {address} did not start; "
                                       f"see {data_dir / 'redis.log'}") from None
                time.sleep(0.05)
        yield url
    finally:
        stop_process(proc)


@contextmanager
def tcp_listener(address: str) -> Iterator[int]:
    """A socket listening on `address` (the kernel completes handshakes); yields its port."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])

