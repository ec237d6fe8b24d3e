"""Handlers of network containment: isolate and release, with an nftables table of our own.

The table (`inet liveresponse_isolation`) drops everything in and out but loopback, the
broker's addresses and port, and in selective mode the allowed destinations. It is written as
nftables JSON and fed to `nft -j -f -` as one transaction; release deletes that table only.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from tasks.commands.isolation import (
    ISOLATION_TABLE,
    Destination,
    IsolateArgs,
    IsolateResult,
    ReleaseArgs,
    ReleaseResult,
)
from tasks.errors import FirewallError, IsolationUnavailableError
from worker_agent.context import BrokerEndpoint, CommandContext

#: nftables family of our table: `inet` filters IPv4 and IPv6 in one table.
TABLE_FAMILY = "inet"
#: How the table is named in messages and results.
TABLE_LABEL = f"{TABLE_FAMILY} {ISOLATION_TABLE}"
#: Seconds one `nft` run may take.
NFT_TIMEOUT_S = 10.0
#: Port of a Redis URL that names none.
REDIS_DEFAULT_PORT = 6379
#: ICMPv6 types without which IPv6 neighbours (the broker, its router) cannot be found.
ND_TYPES = ["nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"]
#: DHCP client and server ports (v4, v6): without them the endpoint loses its address when its
#: lease ends, and with it the broker.
DHCP_PORTS = ((68, 67), (546, 547))

NOT_INSTALLED = "nftables (nft) is not installed on the endpoint; install the nftables package"
NO_PRIVILEGE = "the agent lacks the privilege (CAP_NET_ADMIN/root) to change the firewall"
#: What `nft` says on stderr when the caller may not touch the firewall.
_PRIVILEGE_MARKERS = ("Operation not permitted", "you must be root", "Permission denied")
#: What `nft` says when the table does not exist.
_MISSING_MARKER = "No such file or directory"

Rule = dict[str, Any]


def broker_endpoints(redis_url: str | None) -> tuple[BrokerEndpoint, ...] | None:
    """The broker's addresses and port from the agent's Redis URL.

    Empty for a unix socket (loopback is always allowed); None when the URL names no host we
    can resolve now, so that isolation refuses rather than cut the agent off its broker.
    """
    if not redis_url:
        return None
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return ()
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        return None
    try:
        port = parts.port or REDIS_DEFAULT_PORT
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return None
    # A link-local IPv6 address carries its zone (`fe80::1%eth0`), which nft does not take.
    addresses = sorted({str(info[4][0]).partition("%")[0] for info in infos})
    return tuple(BrokerEndpoint(address, port) for address in addresses)


def build_ruleset(broker: Iterable[BrokerEndpoint],
                  allowed: Iterable[Destination] = ()) -> dict[str, Any]:
    """The nftables JSON of one transaction that (re)creates our table.

    `add table; delete table; add table ...` in one batch: an existing table is replaced
    atomically, so there is never a moment without it, and a missing one is no error.
    """
    table = {"family": TABLE_FAMILY, "name": ISOLATION_TABLE}
    commands: list[dict[str, Any]] = [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    for chain in ("input", "output"):
        commands.append({"add": {"chain": {"family": TABLE_FAMILY, "table": ISOLATION_TABLE,
                                           "name": chain, "type": "filter", "hook": chain,
                                           "prio": 0, "policy": "drop"}}})
        for expr in _accepts(chain == "output", broker, allowed):
            commands.append({"add": {"rule": {"family": TABLE_FAMILY, "table": ISOLATION_TABLE,
                                              "chain": chain, "expr": expr}}})
    return {"nftables": commands}


def build_release() -> dict[str, Any]:
    """The nftables JSON that deletes our table and nothing else."""
    return {"nftables": [{"delete": {"table": {"family": TABLE_FAMILY,
                                               "name": ISOLATION_TABLE}}}]}


def _accepts(outgoing: bool, broker: Iterable[BrokerEndpoint],
             allowed: Iterable[Destination]) -> list[list[Rule]]:
    """The accept rules of one chain: outgoing ones match destinations, incoming ones sources."""
    addr, port = ("daddr", "dport") if outgoing else ("saddr", "sport")
    local_port = "sport" if outgoing else "dport"
    rules: list[list[Rule]] = [
        [_match({"meta": {"key": "oifname" if outgoing else "iifname"}}, "lo")],
        [_match(_payload("icmpv6", "type"), {"set": ND_TYPES})],
    ]
    for client, server in DHCP_PORTS:
        rules.append([_match(_payload("udp", local_port), client),
                      _match(_payload("udp", port), server)])
    for ep in broker:
        rules.append([_match(_payload(_family(ep.address), addr), ep.address),
                      _match(_payload("tcp", port), ep.port)])
    for dest in allowed:
        rule = [_match(_payload(f"ip{'6' if dest.version == 6 else ''}", addr),
                       _network(dest))]
        if dest.port is not None:
            rule += [_match({"meta": {"key": "l4proto"}}, {"set": ["tcp", "udp"]}),
                     _match(_payload("th", port), dest.port)]
        rules.append(rule)
    return [rule + [{"accept": None}] for rule in rules]


def _match(left: Rule, right: object) -> Rule:
    return {"match": {"op": "==", "left": left, "right": right}}


def _payload(protocol: str, field: str) -> Rule:
    return {"payload": {"protocol": protocol, "field": field}}


def _family(address: str) -> str:
    return "ip6" if ":" in address else "ip"


def _network(dest: Destination) -> object:
    net = dest.network
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def run_isolate(args: IsolateArgs, ctx: CommandContext) -> IsolateResult:
    """Install (or replace) our table; succeed only once `nft` lists it."""
    if ctx.broker_endpoints is None:
        raise IsolationUnavailableError(
            "the agent cannot tell its broker's address from its Redis URL; isolating would cut "
            "it off, so nothing was changed",
            hint="run the agent with LR_REDIS_URL=redis://HOST:PORT naming a resolvable host")
    nft = _find_nft()
    allowed = args.destinations
    _run_nft(nft, ["-j", "-f", "-"], json.dumps(build_ruleset(ctx.broker_endpoints, allowed)))
    if not _has_drop_chains(nft):
        raise FirewallError(f"nft ran, but the table {TABLE_LABEL} is not in place afterwards",
                            hint="check the endpoint's firewall with 'nft list ruleset'")
    return IsolateResult(mode=args.mode, table=TABLE_LABEL,
                         broker=[str(ep) for ep in ctx.broker_endpoints],
                         allowed=[str(d) for d in allowed])


def run_release(args: ReleaseArgs, ctx: CommandContext) -> ReleaseResult:
    """Delete our table; `removed` is False when there was none."""
    nft = _find_nft()
    if _list_table(nft) is None:
        return ReleaseResult(removed=False, table=TABLE_LABEL)
    try:
        _run_nft(nft, ["-j", "-f", "-"], json.dumps(build_release()))
    except FirewallError as exc:
        if _MISSING_MARKER not in exc.message:
            raise
        return ReleaseResult(removed=False, table=TABLE_LABEL)  # released meanwhile
    if _list_table(nft) is not None:
        raise FirewallError(f"nft ran, but the table {TABLE_LABEL} is still there",
                            hint="check the endpoint's firewall with 'nft list ruleset'")
    return ReleaseResult(removed=True, table=TABLE_LABEL)


#: What a heartbeat reports of the table while the device is recorded isolated.
TABLE_IN_PLACE = "in_place"
TABLE_MISSING = "missing"
TABLE_UNKNOWN = "unknown"


def isolation_table_state() -> str:
    """Whether our table is in place with its drop policies (read-only: `nft list`), gone
    (flushed, a reboot), or cannot be told (no nft, no privilege)."""
    try:
        return TABLE_IN_PLACE if _has_drop_chains(_find_nft()) else TABLE_MISSING
    except (IsolationUnavailableError, FirewallError):
        return TABLE_UNKNOWN


def _find_nft() -> str:
    if sys.platform != "linux":
        raise IsolationUnavailableError(
            f"network isolation needs Linux and nftables; this endpoint runs {sys.platform}")
    nft = shutil.which("nft")
    if nft is None:
        raise IsolationUnavailableError(NOT_INSTALLED,
                                        hint="e.g. apt-get install nftables; nft must be on the "
                                             "agent's PATH")
    return nft


def _run_nft(nft: str, argv: list[str], stdin: str | None = None) -> str:
    """Run nft and return its stdout; raise the error its failure stands for."""
    try:
        done = subprocess.run([nft, *argv], input=stdin, capture_output=True, text=True,
                              timeout=NFT_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise IsolationUnavailableError(NOT_INSTALLED) from None
    except PermissionError:
        raise IsolationUnavailableError(NO_PRIVILEGE, hint=f"the agent may not run {nft}") from None
    except subprocess.TimeoutExpired:
        raise FirewallError(f"nft did not finish within {NFT_TIMEOUT_S:g} s") from None
    if done.returncode == 0:
        return done.stdout
    if any(marker in done.stderr for marker in _PRIVILEGE_MARKERS):
        raise IsolationUnavailableError(
            NO_PRIVILEGE, hint="run lr-agent as root or grant it CAP_NET_ADMIN")
    errors = [line.strip() for line in done.stderr.splitlines() if "Error" in line]
    detail = errors[-1] if errors else (done.stderr.strip() or f"exit {done.returncode}")
    raise FirewallError(f"nft refused the change: {detail}")


def _list_table(nft: str) -> dict[str, Any] | None:
    """Our table as `nft -j` lists it, or None when it does not exist."""
    try:
        out = _run_nft(nft, ["-j", "list", "table", TABLE_FAMILY, ISOLATION_TABLE])
    except FirewallError as exc:
        if _MISSING_MARKER in exc.message:
            return None
        raise
    try:
        listing: dict[str, Any] = json.loads(out)
    except ValueError:
        raise FirewallError("nft listed the table in a form we cannot read") from None
    return listing


def _has_drop_chains(nft: str) -> bool:
    """True when our table exists with input and output chains whose policy is drop."""
    listing = _list_table(nft)
    if listing is None:
        return False
    chains = {item["chain"]["name"]: item["chain"] for item in listing.get("nftables", [])
              if "chain" in item}
    return all(chains.get(hook, {}).get("policy") == "drop" for hook in ("input", "output"))
