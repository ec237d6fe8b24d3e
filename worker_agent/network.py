"""Handler of the network command: netstat (TCP and UDP sockets over IPv4 and IPv6)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from tasks.commands.network import Connection, NetstatArgs, NetstatResult, Proto
from worker_agent.context import CommandContext

_PROTOS: dict[tuple[int, int], Proto] = {
    (socket.AF_INET, socket.SOCK_STREAM): "tcp",
    (socket.AF_INET6, socket.SOCK_STREAM): "tcp6",
    (socket.AF_INET, socket.SOCK_DGRAM): "udp",
    (socket.AF_INET6, socket.SOCK_DGRAM): "udp6",
}
#: Sockets no process holds any more; their missing owner is not a privilege problem.
_OWNERLESS_STATES = frozenset({psutil.CONN_TIME_WAIT, psutil.CONN_CLOSE})


@dataclass(frozen=True)
class OwnedSocket:
    """One psutil connection with the pid that owns it (per-process listings lack it)."""

    conn: Any  # psutil's sconn or pconn namedtuple
    pid: int | None


def run_netstat(args: NetstatArgs, ctx: CommandContext) -> NetstatResult:
    """Every TCP/UDP socket with its owning process, sorted by protocol and local port."""
    try:
        sockets = [OwnedSocket(c, c.pid) for c in psutil.net_connections(kind="inet")]
        partial = _owners_hidden(sockets)
    except psutil.AccessDenied:
        # macOS and some hardened kernels refuse the system-wide listing to non-root.
        sockets, partial = list_sockets_per_process()
    names: dict[int, str | None] = {}
    connections = [conn for conn in (to_connection(s, names) for s in sockets) if conn is not None]
    connections.sort(
        key=lambda c: (
            c.proto,
            c.local_port,
            c.local_address,
            c.remote_address or "",
            c.remote_port or 0,
            c.pid or 0,
        )
    )
    return NetstatResult(connections=connections, partial=partial)


def list_sockets_per_process() -> tuple[list[OwnedSocket], bool]:
    """Sockets of every process we may read, and whether some processes were unreadable."""
    sockets: list[OwnedSocket] = []
    partial = False
    for proc in psutil.process_iter():
        try:
            sockets.extend(OwnedSocket(c, proc.pid) for c in proc.net_connections(kind="inet"))
        except psutil.AccessDenied:
            partial = True
        except psutil.NoSuchProcess:
            pass  # ended meanwhile: its sockets are gone too
    return sockets, partial


def to_connection(sock: OwnedSocket, names: dict[int, str | None]) -> Connection | None:
    """One socket in the result's shape; None for socket kinds netstat does not report."""
    conn = sock.conn
    proto = _PROTOS.get((conn.family, conn.type))
    if proto is None or not conn.laddr:
        return None
    return Connection(
        proto=proto,
        local_address=conn.laddr.ip,
        local_port=conn.laddr.port,
        remote_address=conn.raddr.ip if conn.raddr else None,
        remote_port=conn.raddr.port if conn.raddr else None,
        state=conn.status,
        pid=sock.pid,
        process_name=process_name(sock.pid, names),
    )


def process_name(pid: int | None, names: dict[int, str | None]) -> str | None:
    """The name of `pid`, memoised in `names`; None when unknown, gone or unreadable."""
    if pid is None:
        return None
    if pid not in names:
        try:
            names[pid] = psutil.Process(pid).name()
        except psutil.Error:
            names[pid] = None
    return names[pid]


def _owners_hidden(sockets: Iterable[OwnedSocket]) -> bool:
    # Linux lists every socket to anyone but only shows owners of processes we may inspect;
    # without root, a live socket with no owner most likely belongs to someone else.
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return False
    return any(s.pid is None and s.conn.status not in _OWNERLESS_STATES for s in sockets)
