"""Playbook files, the expression language and the rendering of command lines."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from orchestrator.playbooks.expressions import ExpressionError, evaluate, parse_expression
from orchestrator.playbooks.model import PlaybookError, bind_inputs, load_playbook
from orchestrator.playbooks.render import RenderError, parse_template, render_line
from orchestrator.playbooks.runs import step_command_id
from orchestrator.playbooks.triggers import Alert, registered_playbooks, trigger_inputs
from tasks.commands.filesystem import GetFileHashArgs
from tasks.parsing import parse_line

SHIPPED = Path(__file__).resolve().parents[2] / "playbooks"
SHA = "a" * 64


def _playbook(steps: str, inputs: str = "  path: {type: path, required: true}\n") -> str:
    return f"name: probe\ninputs:\n{inputs}steps:\n{steps}"


@pytest.mark.parametrize(("steps", "message"), [
    ("  - {id: collect, line: 'getfil {{ inputs.path }}'}\n",
     "step 'collect' (line): unknown command 'getfil'"),
    ("  - {id: hash, line: 'getfilehash {{ inputs.nope }}'}\n",
     "step 'hash' (line): inputs.nope: no such input"),
    ("  - {id: a, line: 'getfilehash {{ steps.b.result.path }}'}\n"
     "  - {id: b, line: 'getfilehash /x'}\n",
     "step 'a' (line): steps.b.result.path: step 'b' runs later"),
    ("  - {id: a, line: 'getfilehash {{ inputs.path'}\n", "step 'a' (line): unbalanced"),
    ("  - {id: a, line: 'getfilehash /x', when: 'steps.a.result.sha256 =='}\n",
     "step 'a' (when): the expression ends where a value was expected"),
    ("  - {id: a, line: 'getfilehash /x'}\n  - {id: a, line: 'dir'}\n",
     "step 'a' (id): another step has this id"),
    ("  - {id: a, line: '{{ inputs.path }} /x'}\n",
     "step 'a' (line): the command's name must be written out"),
    ("  - {id: a, line: 'getfilehash \"{{ inputs.path }}\"'}\n",
     "step 'a' (line): a placeholder must be a whole word"),
    ("  - {id: a, line: 'kill {{ item.pid }}'}\n",
     "step 'a' (line): item.pid: 'item' exists only in a step with for_each"),
    ("  - {id: a, line: 'getfilehash /x', on_error: maybe}\n", "step 'a' (on_error):"),
    ("  - {id: a, line: 'kill --hard 3'}\n", "step 'a' (line): kill: unknown option '--hard'"),
    ("  - {id: a, line: 'getfilehash {{ os.environ }}'}\n", "unknown name 'os'"),
])
def test_invalid_playbooks_name_the_step_and_the_field(steps: str, message: str) -> None:
    with pytest.raises(PlaybookError) as caught:
        load_playbook(_playbook(steps))
    assert message in caught.value.message


def test_the_shipped_playbooks_are_valid() -> None:
    names = {r.started.playbook.name for r in registered_playbooks(SHIPPED) if r.started}
    assert names == {"suspicious-file", "triage"}


@pytest.mark.parametrize(("text", "value"), [
    ("inputs.h in inputs.iocs", True),
    ("inputs.h not in inputs.iocs", False),
    ("not inputs.h in ['x', 'y']", True),
    ("inputs.n == 3 and inputs.s != 'b' or false", True),
    ("steps.gone.result.sha256 in inputs.iocs", False),  # missing is null, never an error
    ("(inputs.n == 4 or inputs.s == 'a') and not null", True),
    ("inputs.list.1 == 'b'", True),
    ("'a\\'b' == \"a'b\"", True),
])
def test_expressions_evaluate_over_plain_data(text: str, value: bool) -> None:
    context = {"inputs": {"h": SHA, "iocs": [SHA], "n": 3, "s": "a", "list": ["a", "b"]},
               "steps": {}}
    assert evaluate(parse_expression(text), context) is value


@pytest.mark.parametrize("text", [
    "__import__('os')", "inputs.x()", "1 + 1", "inputs[0]", "a ==", "lambda: 1", "'open",
])
def test_anything_beyond_the_language_is_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(text)


@pytest.mark.parametrize("path", ["/tmp/a; rm -rf /", "/tmp/with space", "$(reboot)",
                                  "`id`", "/tmp/quote'\"x", "a --algo=md5"])
def test_a_rendered_value_is_one_argument_whatever_it_holds(path: str) -> None:
    line = render_line(parse_template("getfilehash {{ inputs.path }}"), {"inputs": {"path": path}})
    spec, args = parse_line(line)
    assert spec.name == "getfilehash"
    assert isinstance(args, GetFileHashArgs) and args.path == path and args.algo == "sha256"
    assert shlex.split(line) == ["getfilehash", path]


def test_a_value_that_would_read_as_an_option_is_refused() -> None:
    with pytest.raises(RenderError, match="would be read as an option"):
        render_line(parse_template("getfilehash {{ inputs.path }}"),
                    {"inputs": {"path": "--algo=md5"}})


def test_rendering_a_null_or_a_list_fails_the_step_with_a_reason() -> None:
    template = parse_template("getfilehash {{ steps.hash.result.path }}")
    with pytest.raises(RenderError, match="has no value"):
        render_line(template, {"steps": {}})
    with pytest.raises(RenderError, match="is a list"):
        render_line(template, {"steps": {"hash": {"result": {"path": ["a"]}}}})


def test_inputs_are_typed_defaulted_and_checked() -> None:
    pb = load_playbook((SHIPPED / "suspicious-file.yml").read_text())
    bound = bind_inputs(pb, {"path": "/tmp/x", "iocs": f"{SHA.upper()}, {'b' * 64}"})
    assert bound == {"path": "/tmp/x", "iocs": [SHA, "b" * 64]}
    assert bind_inputs(pb, {"path": "/tmp/x"})["iocs"] == []
    with pytest.raises(Exception, match="needs input 'path'"):
        bind_inputs(pb, {})
    with pytest.raises(Exception, match="is not a sha256"):
        bind_inputs(pb, {"path": "/x", "iocs": "nothex"})
    with pytest.raises(Exception, match="has no input 'pth'"):
        bind_inputs(pb, {"pth": "/x"})


def test_a_trigger_matches_its_rules_and_fills_inputs_from_the_alert() -> None:
    pb = load_playbook((SHIPPED / "suspicious-file.yml").read_text())
    (trigger,) = pb.triggers
    alert = Alert(device="d1", rule="malware-download",
                  indicators={"path": "/tmp/x", "sha256": [SHA]})
    assert trigger_inputs(trigger, alert) == {"path": "/tmp/x", "iocs": [SHA]}
    assert trigger_inputs(trigger, alert.model_copy(update={"rule": "other"})) is None
    assert trigger_inputs(trigger, alert.model_copy(update={"indicators": {}})) is None


def test_step_command_ids_are_the_same_on_every_attempt_and_distinct_per_item() -> None:
    assert step_command_id("R1", "kill", 0) == step_command_id("R1", "kill", 0)
    ids = {step_command_id("R1", "kill", 0), step_command_id("R1", "kill", 1),
           step_command_id("R1", "kill"), step_command_id("R2", "kill", 0)}
    assert len(ids) == 4
