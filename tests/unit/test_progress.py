"""The CLI's progress bar and the poll that follows a command until its outcome."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.cli import progress
from orchestrator.cli.progress import ProgressBar, follow_record, has_outcome, wants_bar

MIB = 1024 * 1024


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "POLL_S", 0.0)
    monkeypatch.setattr(progress, "REDRAW_EVERY_S", 0.0)


def test_the_bar_shows_bytes_and_percent() -> None:
    bar = ProgressBar("getfile", 200 * MIB, enabled=True, stream=Terminal())
    assert bar.line(50 * MIB) == (
        "getfile [#######.......................] 50.0/200.0 MiB  25%")
    assert bar.line(300 * MIB).endswith("200.0/200.0 MiB 100%")


def test_a_disabled_bar_writes_nothing() -> None:
    out = Terminal()
    bar = ProgressBar("x", 100 * MIB, enabled=False, stream=out)
    bar.update(10 * MIB)
    bar.finish()
    assert out.getvalue() == ""


def test_a_bar_redraws_in_place_and_ends_its_line() -> None:
    out = Terminal()
    bar = ProgressBar("x", 10 * MIB, enabled=True, stream=out)
    bar.update(MIB)
    bar.update(10 * MIB)
    bar.finish()
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith("100%\n")


@pytest.mark.parametrize(("size", "json_output", "stream", "wanted"), [
    (100 * MIB, False, Terminal(), True),
    (MIB, False, Terminal(), False),          # over before a bar would help
    (None, False, Terminal(), False),
    (100 * MIB, True, Terminal(), False),     # --json: machine output only
    (100 * MIB, False, io.StringIO(), False),  # not a terminal
])
def test_only_big_transfers_on_a_terminal_get_a_bar(
    size: int | None, json_output: bool, stream: io.StringIO, wanted: bool,
) -> None:
    assert wants_bar(size, json_output, stream) is wanted


def _records(*records: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from records


def test_following_draws_progress_and_waits_for_the_outcome_after_the_final_state() -> None:
    size = 50 * MIB
    feed = _records(
        {"status": "queued"},
        {"status": "running", "progress": {"bytes": 10 * MIB, "size": size}},
        {"status": "running", "progress": {"bytes": 40 * MIB, "size": size}},
        {"status": "completed", "result": None, "error": None},  # outcome not recorded yet
        {"status": "completed", "result": {"sha256": "ab"}, "error": None},
    )
    out = Terminal()
    record = follow_record(lambda: next(feed), label="getfile", json_output=False, stream=out)
    assert record["result"] == {"sha256": "ab"}
    drawn = out.getvalue()
    assert "10.0/50.0 MiB  20%" in drawn and "40.0/50.0 MiB  80%" in drawn
    assert drawn.endswith("\n")


def test_following_stops_at_its_timeout_with_the_record_as_it_stands() -> None:
    record = follow_record(lambda: {"status": "running"}, label="x", json_output=False,
                           timeout_s=0.05, stream=io.StringIO())
    assert record == {"status": "running"}


def test_a_record_has_an_outcome_once_final_with_a_result_or_error() -> None:
    assert not has_outcome({"status": "running", "result": {}})
    assert not has_outcome({"status": "failed", "error": None})
    assert has_outcome({"status": "failed", "error": {"code": "x"}})
    assert has_outcome({"status": "completed", "result": {}})


def test_a_streamed_transfer_is_counted_once_big_enough() -> None:
    feed = _records(
        {"status": "running", "progress": {"bytes": MIB, "size": None}},
        {"status": "running", "progress": {"bytes": 6 * MIB, "size": None}},
        {"status": "completed", "result": {"sha256": "ab"}, "error": None},
    )
    out = Terminal()
    follow_record(lambda: next(feed), label="collect", json_output=False, stream=out)
    assert out.getvalue() == "\rcollect  6.0 MiB so far\n"
