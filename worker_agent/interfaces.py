"""Handler of `interfaces`: network interfaces with their addresses, and the routing table.

Interfaces and addresses come from psutil; routes from /proc/net/route (IPv4, the main table)
and /proc/net/ipv6_route, which lists every table: local and cached routes, routes that are not
up and multicast routes are left out there, so both families show what `ip route` shows.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

import psutil

from tasks.commands.system import (
    Interface,
    InterfaceAddress,
    InterfacesArgs,
    InterfacesResult,
    Route,
)
from worker_agent.context import CommandContext
from worker_agent.system_state import require_linux

PROC_ROUTE = Path("/proc/net/route")
PROC_ROUTE6 = Path("/proc/net/ipv6_route")

#: Route flags (linux/route.h, linux/ipv6_route.h).
RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_CACHE = 0x01000000
RTF_LOCAL = 0x80000000


def run_interfaces(args: InterfacesArgs, ctx: CommandContext) -> InterfacesResult:
    """Every interface with its state and addresses, and the IPv4 and IPv6 routes."""
    require_linux("interfaces")
    return InterfacesResult(interfaces=collect_interfaces(), routes=read_routes())


def collect_interfaces() -> list[Interface]:
    """Interfaces by name: MAC, MTU, up or not, IPv4 and IPv6 addresses with prefix lengths."""
    stats = psutil.net_if_stats()
    interfaces = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        mac = None
        addresses = []
        for addr in addrs:
            if addr.family == psutil.AF_LINK:
                mac = addr.address or None
            elif addr.family in (socket.AF_INET, socket.AF_INET6) and addr.netmask:
                inet6 = addr.family == socket.AF_INET6
                addresses.append(InterfaceAddress(
                    family="inet6" if inet6 else "inet",
                    address=addr.address.split("%", 1)[0],
                    prefixlen=prefix_length(addr.netmask),
                    broadcast=None if inet6 else addr.broadcast))
        stat = stats.get(name)
        interfaces.append(Interface(name=name, mac=mac, mtu=stat.mtu if stat else None,
                                    up=bool(stat and stat.isup), addresses=addresses))
    return interfaces


def prefix_length(netmask: str) -> int:
    """The number of leading one bits of an IPv4 or IPv6 netmask."""
    return bin(int(ipaddress.ip_address(netmask.split("/", 1)[0]))).count("1")


def read_routes() -> list[Route]:
    """The IPv4 and IPv6 routes (an absent file, e.g. IPv6 turned off, gives none)."""
    routes = []
    for path, parse in ((PROC_ROUTE, parse_routes_v4), (PROC_ROUTE6, parse_routes_v6)):
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        routes += parse(text)
    return routes


def parse_routes_v4(text: str) -> list[Route]:
    """/proc/net/route: a header, then `Iface Destination Gateway Flags RefCnt Use Metric Mask
    ...`, addresses as hex in host byte order."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or not int(fields[3], 16) & RTF_UP:
            continue
        dest, gateway, mask = (_ipv4(fields[i]) for i in (1, 2, 7))
        prefix = prefix_length(mask)
        routes.append(Route(
            family="inet", destination="default" if prefix == 0 else f"{dest}/{prefix}",
            gateway=gateway if int(fields[3], 16) & RTF_GATEWAY else None,
            interface=fields[0], metric=int(fields[6])))
    return routes


def parse_routes_v6(text: str) -> list[Route]:
    """/proc/net/ipv6_route: `dest plen src splen nexthop metric refcnt use flags iface`,
    addresses and numbers as hex."""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        flags = int(fields[8], 16)
        dest = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        if not flags & RTF_UP or flags & (RTF_LOCAL | RTF_CACHE) or dest.is_multicast:
            continue
        prefix = int(fields[1], 16)
        nexthop = ipaddress.IPv6Address(bytes.fromhex(fields[4]))
        routes.append(Route(
            family="inet6", destination="default" if prefix == 0 else f"{dest}/{prefix}",
            gateway=None if nexthop.is_unspecified else str(nexthop),
            interface=fields[9], metric=int(fields[5], 16)))
    return routes


def _ipv4(hex_host_order: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(hex_host_order, 16)))
