"""Any playbook text, condition, template or input value parses or is refused with a clean
UsageError; a parsed expression evaluates over any JSON without raising."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.playbooks.expressions import evaluate, parse_expression
from orchestrator.playbooks.model import InputSpec, coerce_input, load_playbook
from orchestrator.playbooks.render import parse_template, render_line
from tasks.errors import UsageError
from tests.fuzzing import AWKWARD_WORDS, assert_clean_error

TOKENS = ("and", "or", "not", "in", "==", "!=", "(", ")", "[", "]", ",", ".", "true", "null",
          "inputs", "steps", "item", "0", "-1", "1.5", "'x'", '"y\\n"', "'", '"', "{{", "}}",
          "\\", "99999999999999999999")
EXPRESSIONS = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(TOKENS), max_size=15)
                        .map(" ".join))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=10)
INPUT_TYPES = ["string", "path", "int", "bool", "sha256", "sha256_list", "string_list"]
VALID = {"name": "p", "inputs": {"d": {"type": "path", "default": "/tmp"}},
         "steps": [{"id": "a", "line": "dir {{ inputs.d }}"}],
         "triggers": [{"rule": "r", "inputs": {"d": "alert.device"}}]}


def cleanly(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except UsageError as exc:
        assert_clean_error(exc)
        return None


@given(EXPRESSIONS, JSON)
def test_any_expression_parses_and_evaluates_or_is_a_clean_usage_error(
        text: str, data: Any) -> None:
    node = cleanly(parse_expression, text)
    if node is not None:
        evaluate(node, {"inputs": data, "steps": data, "item": data})


@given(EXPRESSIONS, JSON)
def test_any_placeholder_parses_and_renders_or_is_a_clean_usage_error(
        text: str, data: Any) -> None:
    template = cleanly(parse_template, "dir {{ " + text + " }}")
    if template is not None:
        cleanly(render_line, template, {"inputs": data, "steps": data, "item": data})


@given(st.sampled_from(INPUT_TYPES), JSON | st.sampled_from(AWKWARD_WORDS))
def test_any_input_value_is_coerced_or_is_a_clean_usage_error(kind: str, value: Any) -> None:
    cleanly(coerce_input, "x", InputSpec(type=kind), value)  # type: ignore[arg-type]


@given(st.sampled_from(INPUT_TYPES),
       st.sampled_from([".inf", "-.inf", ".nan", "1e999", "[1, 2]", "{a: 1}", "null", "~",
                        "99999999999999999999999", "-5", "!!binary aGk=", "2024-01-01"]))
def test_an_odd_yaml_default_of_any_input_type_is_a_clean_usage_error_or_accepted(
        kind: str, default: str) -> None:
    cleanly(load_playbook, f"name: p\ninputs:\n  x:\n    type: {kind}\n    default: {default}\n"
                           "steps:\n  - id: a\n    line: dir /\n")


def _mutated(key: str, value: Any, in_step: bool) -> str:
    if in_step:
        return yaml.safe_dump({**VALID, "steps": [{**VALID["steps"][0], key: value}]})
    return yaml.safe_dump({**VALID, key: value})


@given(st.one_of(
    st.text(max_size=200),
    JSON.map(yaml.safe_dump),
    st.builds(_mutated, st.sampled_from(["name", "inputs", "steps", "triggers", "id", "line",
                                         "when", "for_each", "on_error", "extra"]),
              JSON | EXPRESSIONS, st.booleans())))
def test_any_playbook_text_loads_or_is_a_clean_usage_error(text: str) -> None:
    cleanly(load_playbook, text)
