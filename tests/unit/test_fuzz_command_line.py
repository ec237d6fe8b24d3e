"""Any command line, duration or device selector parses or is refused with a clean UsageError:
never another exception (ValidationError, IndexError, ValueError…) and never a message that a
control character in the input could break."""

from __future__ import annotations

import math
import shlex

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.commands.jobs import split_background
from orchestrator.fleet.selector import TAG_PREFIX, parse_selector
from tasks.commands.base import CommandArgs
from tasks.durations import check_expiry, parse_duration
from tasks.errors import UsageError
from tasks.parsing import parse_line
from tasks.registry import REGISTRY
from tests.fuzzing import AWKWARD_WORDS, assert_clean_error, words

ALL_FLAGS = sorted({o.flag for spec in REGISTRY.values() for o in spec.options})


def parses_cleanly(line: str) -> CommandArgs | None:
    """The line's arguments, or None when it was refused the way a user should be."""
    try:
        return parse_line(line)[1]
    except UsageError as exc:
        assert_clean_error(exc)
        return None


def strings_of(args: CommandArgs) -> list[str]:
    out: list[str] = []
    for value in args.model_dump().values():
        items = value if isinstance(value, list | tuple) else [value]
        out += [v for v in items if isinstance(v, str)]
    return out


@given(st.text(max_size=200))
def test_any_text_as_a_command_line_parses_or_is_a_clean_usage_error(line: str) -> None:
    parses_cleanly(line)


@given(st.sampled_from(sorted(REGISTRY)), st.lists(words(ALL_FLAGS), max_size=8),
       st.booleans())
def test_any_words_after_a_known_command_parse_or_are_a_clean_usage_error(
        name: str, rest: list[str], quoted: bool) -> None:
    # Quoted: the words arrive as written; raw: unbalanced quotes, `--` and `=` run together.
    line = name + " " + (shlex.join(rest) if quoted else " ".join(rest))
    args = parses_cleanly(line)
    if args is not None:
        assert not any("\x00" in text for text in strings_of(args)), line


@given(st.sampled_from([s for s in REGISTRY.values() if s.options]), st.data())
def test_each_option_with_any_value_missing_or_repeated_parses_or_is_a_clean_usage_error(
        spec, data) -> None:  # type: ignore[no-untyped-def]
    flag = data.draw(st.sampled_from([o.flag for o in spec.options]))
    value = data.draw(st.sampled_from(AWKWARD_WORDS) | st.integers().map(str) | st.text())
    positionals = [data.draw(st.sampled_from(["/tmp", "x", "1"])) for _ in spec.positionals]
    shape = data.draw(st.sampled_from(["value", "missing", "repeated", "inline", "after --"]))
    tail = {"value": [flag, value], "missing": [flag], "repeated": [flag, value, flag, value],
            "inline": [f"{flag}={value}"], "after --": ["--", flag, value]}[shape]
    parses_cleanly(shlex.join([spec.name, *positionals, *tail]))


@given(st.sampled_from(["kill", "processes --pid", "findfile x --max"]),
       st.one_of(st.integers(), st.floats().map(str), st.sampled_from(AWKWARD_WORDS)))
def test_huge_negative_and_non_numbers_where_a_number_is_expected_are_clean_usage_errors(
        prefix: str, number: object) -> None:
    args = parses_cleanly(f"{prefix} {shlex.quote(str(number))}")
    if args is not None:
        assert all(v is None or not isinstance(v, int) or v >= 0
                   for v in args.model_dump().values())


@given(st.text(max_size=60))
def test_a_trailing_ampersand_never_changes_whether_a_line_parses_cleanly(line: str) -> None:
    stripped, _ = split_background(line)
    parses_cleanly(stripped)


@given(st.one_of(st.text(max_size=20), st.sampled_from(AWKWARD_WORDS),
                 st.tuples(st.floats(), st.sampled_from(["", "s", "m", "h", "d", "x"]))
                 .map(lambda t: f"{t[0]}{t[1]}")))
def test_any_duration_is_positive_and_finite_or_a_clean_usage_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except UsageError as exc:
        assert_clean_error(exc)
        return
    assert math.isfinite(seconds) and seconds > 0


@given(st.one_of(st.none(), st.floats()), st.floats(min_value=1, max_value=1e6),
       st.floats(min_value=1, max_value=1e9))
def test_any_expiry_is_within_its_limit_or_a_clean_usage_error(
        expires: float | None, default: float, maximum: float) -> None:
    try:
        chosen = check_expiry(expires, default, maximum)
    except UsageError as exc:
        assert_clean_error(exc)
        return
    assert chosen == default if expires is None else 0 < chosen <= maximum


@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(AWKWARD_WORDS),
                          st.text(max_size=12).map(TAG_PREFIX.__add__)), max_size=5)
       .map(",".join))
def test_any_selector_is_a_list_of_valid_terms_or_a_clean_usage_error(selector: str) -> None:
    try:
        terms = parse_selector(selector)
    except UsageError as exc:
        assert_clean_error(exc)
        return
    assert terms and all(t and t == t.strip() and "," not in t for t in terms)
