"""The isolation ruleset as nftables JSON, the broker's endpoints, and refusals before `nft`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.commands.isolation import ISOLATION_TABLE, IsolateArgs, ReleaseArgs, parse_destinations
from tasks.errors import IsolationUnavailableError
from worker_agent.context import BrokerEndpoint, CommandContext
from worker_agent.isolation import (
    NOT_INSTALLED,
    broker_endpoints,
    build_release,
    build_ruleset,
    run_isolate,
    run_release,
)

TABLE = {"family": "inet", "name": ISOLATION_TABLE}
BROKER4 = BrokerEndpoint("192.0.2.10", 6379)
BROKER6 = BrokerEndpoint("2001:db8::10", 6380)


def chain_rules(ruleset: dict[str, Any], chain: str) -> list[list[dict[str, Any]]]:
    """The expressions of the rules added to `chain`, in order, without their verdict."""
    out = []
    for command in ruleset["nftables"]:
        rule = command.get("add", {}).get("rule")
        if rule and rule["chain"] == chain:
            assert rule["family"] == "inet" and rule["table"] == ISOLATION_TABLE
            assert rule["expr"][-1] == {"accept": None}  # every rule accepts; the policy drops
            out.append(rule["expr"][:-1])
    return out


def match(protocol: str, field: str, right: object) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": protocol, "field": field}},
                      "right": right}}


def test_the_table_is_replaced_in_one_transaction_with_drop_policies() -> None:
    commands = build_ruleset([BROKER4])["nftables"]
    assert commands[:4] == [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": TABLE}},
        {"delete": {"table": TABLE}},
        {"add": {"table": TABLE}},
    ]
    chains = [c["add"]["chain"] for c in commands if "chain" in c.get("add", {})]
    assert chains == [
        {"family": "inet", "table": ISOLATION_TABLE, "name": hook, "type": "filter",
         "hook": hook, "prio": 0, "policy": "drop"}
        for hook in ("input", "output")
    ]
    # Nothing but our own table is ever named.
    assert all(c[verb][kind].get("table", c[verb][kind].get("name")) == ISOLATION_TABLE
               for c in commands[1:] for verb in c for kind in c[verb])


def test_full_isolation_accepts_loopback_neighbours_dhcp_and_the_broker_only() -> None:
    ruleset = build_ruleset([BROKER4])
    output = chain_rules(ruleset, "output")
    assert output[0] == [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}},
                                    "right": "lo"}}]
    assert output[1][0]["match"]["left"] == {"payload": {"protocol": "icmpv6", "field": "type"}}
    assert output[2:4] == [[match("udp", "sport", 68), match("udp", "dport", 67)],
                           [match("udp", "sport", 546), match("udp", "dport", 547)]]
    assert output[4:] == [[match("ip", "daddr", "192.0.2.10"), match("tcp", "dport", 6379)]]
    incoming = chain_rules(ruleset, "input")
    assert incoming[0][0]["match"]["left"] == {"meta": {"key": "iifname"}}
    assert incoming[2] == [match("udp", "dport", 68), match("udp", "sport", 67)]
    assert incoming[4:] == [[match("ip", "saddr", "192.0.2.10"), match("tcp", "sport", 6379)]]


def test_an_ipv6_broker_is_matched_as_ip6() -> None:
    output = chain_rules(build_ruleset([BROKER4, BROKER6]), "output")
    assert output[-1] == [match("ip6", "daddr", "2001:db8::10"), match("tcp", "dport", 6380)]
    incoming = chain_rules(build_ruleset([BROKER6]), "input")
    assert incoming[-1] == [match("ip6", "saddr", "2001:db8::10"), match("tcp", "sport", 6380)]


def test_a_unix_socket_broker_leaves_only_loopback_and_link_upkeep() -> None:
    assert len(chain_rules(build_ruleset([]), "output")) == 4


def test_selective_isolation_adds_each_allowed_destination() -> None:
    allowed = parse_destinations("10.0.0.0/8,192.0.2.7:443,[2001:db8::1]:22")
    output = chain_rules(build_ruleset([BROKER4], allowed), "output")
    l4 = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                    "right": {"set": ["tcp", "udp"]}}}
    assert output[-3:] == [
        [match("ip", "daddr", {"prefix": {"addr": "10.0.0.0", "len": 8}})],
        [match("ip", "daddr", "192.0.2.7"), l4, match("th", "dport", 443)],
        [match("ip6", "daddr", "2001:db8::1"), l4, match("th", "dport", 22)],
    ]
    incoming = chain_rules(build_ruleset([BROKER4], allowed), "input")
    assert incoming[-1] == [match("ip6", "saddr", "2001:db8::1"), l4, match("th", "sport", 22)]


def test_release_deletes_our_table_only() -> None:
    assert build_release() == {"nftables": [{"delete": {"table": TABLE}}]}


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://127.0.0.1:6390/0", (BrokerEndpoint("127.0.0.1", 6390),)),
    ("rediss://:secret@192.0.2.10/1", (BrokerEndpoint("192.0.2.10", 6379),)),
    ("redis://[::1]:7000", (BrokerEndpoint("::1", 7000),)),
    ("unix:///run/redis.sock", ()),
    ("sentinel://192.0.2.10:26379", None),
    ("redis://:6379/0", None),
    (None, None),
])
def test_broker_endpoints_come_from_the_redis_url(url: str | None, expected: object) -> None:
    assert broker_endpoints(url) == expected


def test_isolation_refuses_when_the_broker_is_unknown() -> None:
    with pytest.raises(IsolationUnavailableError, match="cannot tell its broker's address"):
        run_isolate(IsolateArgs(), CommandContext(device_id="d", broker_endpoints=None))


def test_without_nft_on_path_both_commands_say_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    ctx = CommandContext(device_id="d", broker_endpoints=(BROKER4,))
    for run, args in ((run_isolate, IsolateArgs()), (run_release, ReleaseArgs())):
        with pytest.raises(IsolationUnavailableError) as info:
            run(args, ctx)  # type: ignore[operator]
        assert info.value.message == NOT_INSTALLED
        assert info.value.code == "isolation_unavailable"
