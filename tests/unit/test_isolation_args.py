"""`isolate` arguments: modes, the `--allow` list, and the message each bad form gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.commands.isolation import ALLOW_MAX_ENTRIES, IsolateArgs, parse_destinations
from tasks.commands.network import NetstatArgs, NetstatResult
from tasks.errors import UsageError
from tasks.parsing import parse_line
from tasks.registry import REGISTRY, CommandSpec


def allow_error(**fields: object) -> str:
    """The message IsolateArgs gives for these fields (it must refuse them)."""
    with pytest.raises(ValidationError) as info:
        IsolateArgs(**fields)  # type: ignore[arg-type]
    return str(info.value.errors()[0]["msg"])


def test_full_is_the_default_and_allows_nothing_more() -> None:
    args = IsolateArgs()
    assert (args.mode, args.allow, args.destinations) == ("full", None, ())


def test_selective_parses_every_written_form() -> None:
    args = IsolateArgs(mode="selective",
                       allow=" 10.0.0.0/8, 192.0.2.7:443,[2001:db8::1]:22,2001:db8::/32,::1 ")
    assert [str(d) for d in args.destinations] == [
        "10.0.0.0/8", "192.0.2.7:443", "[2001:db8::1]:22", "2001:db8::/32", "::1"]
    assert [(d.version, d.port) for d in args.destinations] == [
        (4, None), (4, 443), (6, 22), (6, None), (6, None)]


def test_a_destination_written_twice_is_kept_once() -> None:
    assert len(parse_destinations("192.0.2.7,192.0.2.7/32")) == 1


def test_allow_with_full_mode_is_refused() -> None:
    assert allow_error(allow="192.0.2.7") == "--allow needs --mode selective"


def test_selective_without_allow_is_refused() -> None:
    assert allow_error(mode="selective").startswith("--mode selective needs --allow ADDR")


@pytest.mark.parametrize(("allow", "problem"), [
    ("example.com", "'example.com' is not an IP address or network"),
    ("192.0.2.300", "is not an IP address or network"),
    ("10.0.0.1/8", "has host bits set; did you mean 10.0.0.0/8?"),
    ("192.0.2.7:0", "port must be a number from 1 to 65535, got '0'"),
    ("192.0.2.7:65536", "port must be a number from 1 to 65535"),
    ("192.0.2.7:http", "port must be a number from 1 to 65535, got 'http'"),
    ("[2001:db8::1", "missing ']' after the IPv6 address"),
    ("[2001:db8::1]22", "expected ':PORT' after ']'"),
    ("192.0.2.7,,192.0.2.8", "empty destination in the list"),
    ("192.0.2.7,", "empty destination in the list"),
    ("0.0.0.0/0", "would allow every address; release the device"),
    ("::/0", "would allow every address"),
    (",".join(f"192.0.2.{i}" for i in range(ALLOW_MAX_ENTRIES + 1)),
     f"at most {ALLOW_MAX_ENTRIES} destinations may be allowed, got {ALLOW_MAX_ENTRIES + 1}"),
])
def test_each_bad_destination_is_named_with_what_is_wrong(allow: str, problem: str) -> None:
    assert problem in allow_error(mode="selective", allow=allow)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValidationError, match="'full' or 'selective'"):
        IsolateArgs(mode="partial")  # type: ignore[arg-type]


def test_the_command_line_reports_the_problem_with_the_usage() -> None:
    with pytest.raises(UsageError) as info:
        parse_line("isolate --allow 192.0.2.7")
    assert info.value.message == "isolate: bad value for allow: --allow needs --mode selective"
    assert info.value.hint == "usage: isolate [--mode MODE] [--allow ALLOW]"
    spec, args = parse_line("isolate --mode selective --allow 192.0.2.7:443")
    assert spec.name == "isolate"
    assert [str(d) for d in args.destinations] == ["192.0.2.7:443"]  # type: ignore[attr-defined]


def test_a_command_runs_while_isolated_only_when_marked() -> None:
    unmarked = CommandSpec("x", "x", NetstatArgs, NetstatResult, "live.read")
    assert not unmarked.allowed_while_isolated and not unmarked.device_level
    for name in ("dir", "cd", "fileinfo", "findfile", "getfilehash", "processes", "netstat",
                 "kill", "isolate", "release"):
        assert REGISTRY[name].allowed_while_isolated, name
    assert {n for n, spec in REGISTRY.items() if spec.device_level} == {"isolate", "release"}
    assert REGISTRY["isolate"].platforms == REGISTRY["release"].platforms == {"linux"}
