"""Arguments and results of network containment: isolate, release."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from tasks.commands.base import CommandArgs, CommandResult

#: `full` lets through only loopback and the broker; `selective` also the `--allow` list.
IsolationMode = Literal["full", "selective"]
#: Name of the nftables table (family `inet`) the agent installs, and the only one it removes.
ISOLATION_TABLE = "liveresponse_isolation"
#: Most destinations one selective isolation may allow.
ALLOW_MAX_ENTRIES = 64
#: Longest `--allow` text accepted (64 bracketed IPv6 addresses with ports fit).
ALLOW_MAX_CHARS = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Destination:
    """One allowed destination: an address or network, and optionally one port."""

    network: Network
    port: int | None = None

    @property
    def version(self) -> int:
        """4 or 6."""
        return self.network.version

    def __str__(self) -> str:
        single = self.network.prefixlen == self.network.max_prefixlen
        host = str(self.network.network_address) if single else str(self.network)
        if self.port is None:
            return host
        return f"[{host}]:{self.port}" if self.version == 6 else f"{host}:{self.port}"


def parse_destinations(text: str) -> tuple[Destination, ...]:
    """Parse `IP`, `CIDR`, `IP:PORT` or `[IPv6]:PORT` items separated by commas.

    Raises ValueError naming the first bad item and what is wrong with it.
    """
    items = [item.strip() for item in text.split(",")]
    if len(items) > ALLOW_MAX_ENTRIES:
        raise ValueError(f"at most {ALLOW_MAX_ENTRIES} destinations may be allowed, "
                         f"got {len(items)}")
    out: list[Destination] = []
    for item in items:
        if not item:
            raise ValueError("empty destination in the list (two commas, or one at an end)")
        dest = _parse_one(item)
        if dest not in out:
            out.append(dest)
    return tuple(out)


def _parse_one(item: str) -> Destination:
    host, port = _split_port(item)
    try:
        network = ipaddress.ip_network(host, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network; "
                             "write IP, CIDR, IP:PORT or [IPv6]:PORT") from None
        raise ValueError(f"{item!r} has host bits set; did you mean {loose}?") from None
    if network.prefixlen == 0:
        raise ValueError(f"{item!r} would allow every address; "
                         "release the device instead of isolating it")
    return Destination(network, port)


def _split_port(item: str) -> tuple[str, int | None]:
    """(host, port) of one item; a bare IPv6 address has no port (use brackets for one)."""
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket:
            raise ValueError(f"{item!r}: missing ']' after the IPv6 address")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"{item!r}: expected ':PORT' after ']'")
        return host, _port(item, rest[1:])
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        return host, _port(item, port)
    return item, None


def _port(item: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{item!r}: port must be a number from 1 to 65535, got {text!r}")
    return int(text)


class IsolateArgs(CommandArgs):
    mode: IsolationMode = "full"
    #: Comma-separated destinations a selective isolation still lets through.
    allow: str | None = Field(default=None, max_length=ALLOW_MAX_CHARS, validate_default=True)

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, value: str | None, info: ValidationInfo) -> str | None:
        mode = info.data.get("mode")
        if value is not None and mode == "full":
            raise PydanticCustomError("allow_needs_selective", "--allow needs --mode selective")
        if value is None and mode == "selective":
            raise PydanticCustomError(
                "selective_needs_allow",
                "--mode selective needs --allow ADDR[,ADDR...] (IP, CIDR, IP:PORT, [IPv6]:PORT)")
        if value is None:
            return None
        try:
            parse_destinations(value)
        except ValueError as exc:
            raise PydanticCustomError("bad_destination", str(exc)) from None
        return value

    @property
    def destinations(self) -> tuple[Destination, ...]:
        """The parsed `allow` list (empty in full mode)."""
        return parse_destinations(self.allow) if self.allow is not None else ()


class IsolateResult(CommandResult):
    mode: IsolationMode
    #: The nftables table now in place (`inet liveresponse_isolation`).
    table: str
    #: Broker endpoints still reachable (`addr:port`); empty for a unix-socket broker.
    broker: list[str]
    #: Destinations a selective isolation still reaches.
    allowed: list[str]


class ReleaseArgs(CommandArgs):
    pass


class ReleaseResult(CommandResult):
    #: False when there was no isolation table to remove.
    removed: bool
    table: str
