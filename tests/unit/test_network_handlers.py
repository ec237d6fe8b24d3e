"""The netstat handler on real sockets of this process, checked against ss when it is there."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

from tasks.commands.network import Connection, NetstatArgs, NetstatResult
from tests.privilege import run_as_nobody
from worker_agent.context import CommandContext
from worker_agent.network import list_sockets_per_process, run_netstat

#: ss abbreviates some TCP states; psutil spells them out.
SS_STATES = {
    "ESTAB": "ESTABLISHED",
    "UNCONN": "NONE",
    "TIME-WAIT": "TIME_WAIT",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "LAST-ACK": "LAST_ACK",
}


@dataclass
class Sockets:
    """A listener, a connected client/server pair on it, and a bound UDP socket."""

    listener: socket.socket
    client: socket.socket
    server_side: socket.socket
    udp: socket.socket

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    opened = Sockets(listener, client, server_side, udp)
    try:
        yield opened
    finally:
        for sock in (client, server_side, listener, udp):
            sock.close()


@pytest.fixture
def ctx() -> CommandContext:
    return CommandContext(device_id="test-device")


def ours(connections: list[Connection], port: int) -> list[Connection]:
    return [c for c in connections if port in (c.local_port, c.remote_port)]


def test_netstat_shows_listener_with_state_and_our_pid(
    sockets: Sockets, ctx: CommandContext
) -> None:
    result = run_netstat(NetstatArgs(), ctx)
    listening = [
        c for c in result.connections if c.local_port == sockets.port and c.state == "LISTEN"
    ]
    assert len(listening) == 1
    conn = listening[0]
    assert (conn.proto, conn.local_address, conn.remote_address, conn.remote_port) == (
        "tcp",
        "127.0.0.1",
        None,
        None,
    )
    assert conn.pid == os.getpid()
    assert conn.process_name == psutil.Process().name()


def test_netstat_shows_both_ends_of_a_connection(sockets: Sockets, ctx: CommandContext) -> None:
    client_port = sockets.client.getsockname()[1]
    found = {
        (c.local_port, c.remote_port, c.state, c.pid)
        for c in ours(run_netstat(NetstatArgs(), ctx).connections, sockets.port)
    }
    me = os.getpid()
    assert found == {
        (sockets.port, None, "LISTEN", me),
        (client_port, sockets.port, "ESTABLISHED", me),
        (sockets.port, client_port, "ESTABLISHED", me),
    }


def test_netstat_shows_udp_socket(sockets: Sockets, ctx: CommandContext) -> None:
    port = sockets.udp.getsockname()[1]
    udp = [c for c in run_netstat(NetstatArgs(), ctx).connections if c.proto == "udp"]
    mine = [c for c in udp if c.local_port == port]
    assert len(mine) == 1
    assert (mine[0].local_address, mine[0].remote_address, mine[0].state, mine[0].pid) == (
        "127.0.0.1",
        None,
        "NONE",
        os.getpid(),
    )


def test_netstat_reports_ipv6_as_tcp6(ctx: CommandContext) -> None:
    try:
        six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        six.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    try:
        six.listen()
        port = six.getsockname()[1]
        found = [c for c in run_netstat(NetstatArgs(), ctx).connections if c.local_port == port]
        assert [(c.proto, c.local_address, c.state) for c in found] == [("tcp6", "::1", "LISTEN")]
    finally:
        six.close()


def test_netstat_is_sorted_by_proto_then_local_port(sockets: Sockets, ctx: CommandContext) -> None:
    conns = run_netstat(NetstatArgs(), ctx).connections
    keys = [(c.proto, c.local_port) for c in conns]
    assert keys == sorted(keys)


def netstat_as_nobody(close_fds: list[int]) -> NetstatResult:
    """run_netstat as `nobody`, in a child that closed its copies of `close_fds`."""
    data = run_as_nobody(
        lambda: run_netstat(NetstatArgs(), CommandContext(device_id="test-device"))
        .model_dump_json(),
        close_fds,
    )
    return NetstatResult.model_validate_json(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a socket nobody cannot inspect")
def test_netstat_without_privilege_is_partial_and_hides_foreign_owners(sockets: Sockets) -> None:
    as_root = run_netstat(NetstatArgs(), CommandContext(device_id="test-device"))
    assert as_root.partial is False
    # The child closes its inherited copy, so only root (this process) holds the listener.
    result = netstat_as_nobody([sockets.listener.fileno()])
    listening = [
        c for c in result.connections if (c.local_port, c.state) == (sockets.port, "LISTEN")
    ]
    assert [(c.pid, c.process_name) for c in listening] == [(None, None)]
    assert result.partial is True


def test_per_process_fallback_finds_our_sockets(sockets: Sockets) -> None:
    found, _partial = list_sockets_per_process()
    ports = {s.conn.laddr.port for s in found if s.pid == os.getpid()}
    assert {sockets.port, sockets.udp.getsockname()[1]} <= ports


SS_LINE = re.compile(
    r"^(?P<state>\S+)\s+\d+\s+\d+\s+(?P<local>\S+):(?P<lport>\d+)\s+(?P<peer>\S+):(?P<pport>\S+)"
    r"(?:\s+users:\((?P<users>.*)\))?"
)


def parse_ss(output: str) -> list[tuple[str, int, str, set[int]]]:
    """(state, local port, peer, owning pids) of each line of `ss -tanp`."""
    rows = []
    for line in output.splitlines()[1:]:
        match = SS_LINE.match(line.strip())
        if match is None:
            continue
        pids = {int(p) for p in re.findall(r"pid=(\d+)", match["users"] or "")}
        state = SS_STATES.get(match["state"], match["state"])
        peer = f"{match['peer']}:{match['pport']}"
        rows.append((state, int(match["lport"]), peer, pids))
    return rows


def test_netstat_agrees_with_ss(sockets: Sockets, ctx: CommandContext) -> None:
    ours_now = ours(run_netstat(NetstatArgs(), ctx).connections, sockets.port)
    assert ours_now, "netstat must see our sockets whether or not ss is installed"
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss is not installed; compared with our own expectations only")
    out = subprocess.run([ss, "-tanp"], capture_output=True, text=True, check=True).stdout
    theirs = {
        (state, lport, peer, frozenset(pids))
        for state, lport, peer, pids in parse_ss(out)
        if lport == sockets.port or peer.endswith(f":{sockets.port}")
    }
    mine = {
        (
            c.state,
            c.local_port,
            f"{c.remote_address}:{c.remote_port}" if c.remote_address else "0.0.0.0:*",
            frozenset({c.pid} if c.pid else set()),
        )
        for c in ours_now
    }
    assert mine == theirs
