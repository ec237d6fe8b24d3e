"""Arguments and results of the system state commands: modules, mounts, interfaces."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.commands.base import CommandArgs, CommandResult


class ModulesArgs(CommandArgs):
    pass


class KernelModule(CommandResult):
    name: str
    size_bytes: int
    #: How many references hold the module; None when the kernel shows `-` (not unloadable).
    refcount: int | None = None
    #: The modules that use this one.
    users: list[str] = Field(default_factory=list)
    #: `Live`, `Loading` or `Unloading`.
    state: str
    #: Taint flags the kernel shows after the address, e.g. `OE` (out of tree, unsigned).
    taint: str = ""


class ModulesResult(CommandResult):
    #: Where the list was read (`/proc/modules`).
    source: str
    modules: list[KernelModule]


class MountsArgs(CommandArgs):
    pass


class Mount(CommandResult):
    source: str
    target: str
    fstype: str
    options: list[str]


class MountsResult(CommandResult):
    #: Where the list was read: the agent's own mount namespace (`/proc/self/mounts`).
    source: str
    mounts: list[Mount]


class InterfacesArgs(CommandArgs):
    pass


class InterfaceAddress(CommandResult):
    family: Literal["inet", "inet6"]
    address: str
    prefixlen: int
    broadcast: str | None = None


class Interface(CommandResult):
    name: str
    #: The link-layer address (MAC), when it has one.
    mac: str | None = None
    mtu: int | None = None
    up: bool
    addresses: list[InterfaceAddress]


class Route(CommandResult):
    family: Literal["inet", "inet6"]
    #: `default` or a network in CIDR form (`192.0.2.0/24`).
    destination: str
    gateway: str | None = None
    interface: str
    metric: int


class InterfacesResult(CommandResult):
    interfaces: list[Interface]
    #: The main routing table (`/proc/net/route`, `/proc/net/ipv6_route` without local and
    #: cached routes).
    routes: list[Route]
