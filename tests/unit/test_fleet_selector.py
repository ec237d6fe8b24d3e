"""Device selectors and durations: what an analyst types, parsed or refused clearly."""

from __future__ import annotations

import pytest

from orchestrator.fleet.selector import parse_selector, select
from orchestrator.state.devices import Device
from tasks.durations import check_expiry, format_duration, parse_duration
from tasks.errors import UnknownDeviceError, UsageError


def device(name: str, *tags: str) -> Device:
    return Device(id=name, online=True, last_seen=None, tags=list(tags))


FLEET = [device("web1", "group:web"), device("web2", "group:web", "critical"),
         device("fin1", "group:finance"), device("lap01")]


def test_ids_and_tags_select_each_device_once_in_the_order_first_named() -> None:
    chosen = select(FLEET, "lap01, tag:group:web,web2,tag:critical")
    assert [d.id for d in chosen] == ["lap01", "web1", "web2"]


@pytest.mark.parametrize(("selector", "error", "words"), [
    ("", UsageError, "empty device selector"),
    (" , ,", UsageError, "empty device selector"),
    ("tag:", UsageError, "invalid tag"),
    ("tag:bad tag", UsageError, "invalid tag"),
    ("../etc", UsageError, "device id"),
    ("nosuch", UnknownDeviceError, "unknown device 'nosuch'"),
    ("tag:group:nobody", UnknownDeviceError, "no registered device carries tag 'group:nobody'"),
])
def test_a_selector_that_names_nothing_or_is_malformed_says_which_term(
        selector: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        select(FLEET, selector)


def test_parse_selector_strips_terms() -> None:
    assert parse_selector(" a ,tag:x ,, b") == ["a", "tag:x", "b"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("90", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1.5h", 5400),
    (" 2H ", 7200)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5s", "soon", "5w", "nan", "inf", "1e9"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_durations_format_in_their_largest_whole_unit() -> None:
    assert [format_duration(s) for s in (604800, 5400, 45, 7200, 1.5)] == [
        "7d", "90m", "45s", "2h", "1.5s"]


def test_expiry_defaults_and_stays_within_its_maximum() -> None:
    assert check_expiry(None, 30, 3600) == 30
    assert check_expiry(600, 30, 3600) == 600
    with pytest.raises(UsageError, match="over the maximum of 1h"):
        check_expiry(7200, 30, 3600)
    with pytest.raises(UsageError, match="invalid expiry"):
        check_expiry(float("nan"), 30, 3600)
