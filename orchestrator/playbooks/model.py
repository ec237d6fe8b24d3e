"""Playbooks as data: typed inputs, steps (templated lines, conditions, loops), triggers.

`load_playbook(text)` parses YAML into a `Playbook` and checks everything that can be checked
before a run: each step's command exists, templates and conditions parse and reference only
declared inputs and EARLIER steps, step ids are unique. Errors name the step and the field:
`step 'collect' (line): unknown command 'getfil'`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.playbooks.expressions import Node, Ref, parse_expression, refs
from orchestrator.playbooks.render import check_line_template, parse_template
from tasks.errors import LiveResponseError, UsageError

#: Names of playbooks, inputs and steps.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: Largest playbook file we read.
MAX_PLAYBOOK_BYTES = 256 * 1024
#: What a step's result may be looked at through.
STEP_FIELDS = ("result", "status", "error", "command_id")
#: A sha256 as an IOC list holds it.
SHA256_RE = re.compile(r"[0-9a-f]{64}")

InputType = Literal["string", "path", "int", "bool", "sha256", "sha256_list", "string_list"]


class PlaybookError(UsageError):
    """Raised when a playbook file is not a valid playbook (the message names where)."""

    code = "invalid_playbook"


class InputSpec(BaseModel):
    """One input of a playbook, with its type and whether it must be given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: InputType = "string"
    description: str = ""
    required: bool = False
    default: Any = None


class Step(BaseModel):
    """One command of a playbook: a templated line, optionally conditional or per item."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str = ""
    line: str = Field(min_length=1, max_length=8192)
    #: A condition on inputs and earlier steps; the step is skipped when it is false.
    when: str | None = None
    #: `{{ steps.X.result.LIST }}`: one command per item; the line uses `{{ item... }}`.
    for_each: str | None = None
    on_error: Literal["stop", "continue"] = "stop"


class Trigger(BaseModel):
    """Alerts that start the playbook: a rule name (or any), an optional condition, and how
    the alert fills the inputs (expressions over `alert.*`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str | list[str] | None = None
    when: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)

    def rules(self) -> list[str] | None:
        return [self.rule] if isinstance(self.rule, str) else self.rule


class Playbook(BaseModel):
    """A whole playbook as written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1, max_length=100)
    triggers: list[Trigger] = Field(default_factory=list)


def digest_of(text: str) -> str:
    """The sha256 a playbook's text is stored under and signed by."""
    return hashlib.sha256(text.encode()).hexdigest()


def load_playbook(text: str, source: str = "playbook") -> Playbook:
    """Parse and check a playbook; PlaybookError naming the step and field at fault."""
    if len(text.encode()) > MAX_PLAYBOOK_BYTES:
        raise PlaybookError(f"{source}: larger than {MAX_PLAYBOOK_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}: a playbook is a mapping with name, inputs and steps",
                            hint="see playbooks/triage.yml")
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        raise PlaybookError(f"{source}: {_where(data, exc)}") from None
    check_playbook(playbook)
    return playbook


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what PyYAML found wrong and where (its own text spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return " ".join(str(exc).split())


def _where(data: dict[str, Any], exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = list(first["loc"])
    prefix = ""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") or []
        step = steps[loc[1]] if loc[1] < len(steps) else {}
        sid = step.get("id") if isinstance(step, dict) else None
        prefix = f"step {sid!r}" if sid else f"step {loc[1] + 1}"
        loc = loc[2:]
        return f"{prefix} ({_dotted(loc) or 'step'}): {first['msg']}"
    return f"{_dotted(loc) or 'playbook'}: {first['msg']}"


def _dotted(loc: list[Any]) -> str:
    """A location as `steps.0.line`; a key with a control character in it shown as a literal."""
    return ".".join(part if isinstance(part, str) and part.isprintable() else
                    str(part) if isinstance(part, int) else repr(part) for part in loc)


def check_playbook(playbook: Playbook) -> None:
    """Everything about a parsed playbook that its models cannot say alone."""
    if not NAME_RE.fullmatch(playbook.name):
        raise PlaybookError(f"name: {playbook.name!r} is not a valid playbook name",
                            hint="use lowercase letters, digits, '-' and '_'")
    for name, spec in playbook.inputs.items():
        if not NAME_RE.fullmatch(name):
            raise PlaybookError(f"input {name!r}: not a valid name")
        if spec.default is not None:
            try:
                coerce_input(name, spec, spec.default)
            except LiveResponseError as exc:
                raise PlaybookError(f"input {name!r} (default): {exc.message}") from None
    earlier: set[str] = set()
    for step in playbook.steps:
        _check_step(playbook, step, earlier)
        earlier.add(step.id)
    for n, trigger in enumerate(playbook.triggers, 1):
        _check_trigger(playbook, trigger, n)


def _check_step(playbook: Playbook, step: Step, earlier: set[str]) -> None:
    where = f"step {step.id!r}"
    if not NAME_RE.fullmatch(step.id):
        raise PlaybookError(f"{where} (id): not a valid step id",
                            hint="use lowercase letters, digits, '-' and '_'")
    if step.id in earlier:
        raise PlaybookError(f"{where} (id): another step has this id")
    later = {s.id for s in playbook.steps} - earlier  # this step and those after it
    has_item = step.for_each is not None
    if step.for_each is not None:
        node = _parsed(where, "for_each", step.for_each)
        if not isinstance(node, Ref) or node.path[:1] != ("steps",):
            raise PlaybookError(f"{where} (for_each): must name a list of an earlier step's "
                                "result, e.g. {{ steps.holders.result.processes }}")
        _check_refs(playbook, where, "for_each", [node], earlier, later, item=False)
    try:
        template = parse_template(step.line)
        check_line_template(template)
    except LiveResponseError as exc:
        raise PlaybookError(f"{where} (line): {exc.message}", hint=exc.hint) from None
    _check_refs(playbook, where, "line", template.refs(), earlier, later, item=has_item)
    if step.when is not None:
        node = _parsed(where, "when", step.when)
        _check_refs(playbook, where, "when", list(refs(node)), earlier, later, item=has_item)


def _check_trigger(playbook: Playbook, trigger: Trigger, n: int) -> None:
    where = f"trigger {n}"
    nodes = [_parsed(where, "when", trigger.when)] if trigger.when else []
    for name, expression in trigger.inputs.items():
        if name not in playbook.inputs:
            raise PlaybookError(f"{where} (inputs.{name}): the playbook has no input {name!r}")
        nodes.append(_parsed(where, f"inputs.{name}", expression))
    for node in nodes:
        for ref in refs(node):
            if ref.path[0] != "alert":
                raise PlaybookError(f"{where}: {'.'.join(ref.path)}: a trigger looks only at "
                                    "alert.rule, alert.device and alert.indicators.*")


def _parsed(where: str, field: str, text: str) -> Node:
    source = text.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2]
    try:
        return parse_expression(source)
    except LiveResponseError as exc:
        raise PlaybookError(f"{where} ({field}): {exc.message}", hint=exc.hint) from None


def parse_condition(text: str) -> Node:
    """A `when`/`for_each` text as a tree (braces around it are allowed)."""
    return _parsed("condition", "when", text)


def _check_refs(playbook: Playbook, where: str, field: str, found: list[Ref],
                earlier: set[str], later: set[str], *, item: bool) -> None:
    for ref in found:
        dotted = ".".join(ref.path)
        root = ref.path[0]
        if root == "inputs":
            if len(ref.path) < 2 or ref.path[1] not in playbook.inputs:
                raise PlaybookError(f"{where} ({field}): {dotted}: no such input",
                                    hint="declared inputs: " + (", ".join(playbook.inputs)
                                                                or "none"))
        elif root == "steps":
            sid = ref.path[1] if len(ref.path) > 1 else ""
            if sid in later:
                raise PlaybookError(f"{where} ({field}): {dotted}: step {sid!r} runs later; "
                                    "a step may use only the results of earlier steps")
            if sid not in earlier:
                raise PlaybookError(f"{where} ({field}): {dotted}: no step {sid!r}")
            if len(ref.path) < 3 or ref.path[2] not in STEP_FIELDS:
                raise PlaybookError(f"{where} ({field}): {dotted}: look at a step's "
                                    + ", ".join(STEP_FIELDS))
        elif root == "item":
            if not item:
                raise PlaybookError(f"{where} ({field}): {dotted}: 'item' exists only in a "
                                    "step with for_each")
        else:
            raise PlaybookError(f"{where} ({field}): {dotted}: unknown name {root!r}",
                                hint="use inputs.NAME, steps.ID.result... or item")


def coerce_input(name: str, spec: InputSpec, value: Any) -> Any:
    """A given value (CLI text, or JSON from an alert) as the input's type; UsageError else."""
    def bad(why: str) -> UsageError:
        return UsageError(f"input {name!r}: {why}")

    kind = spec.type
    if kind in ("string", "path"):
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise bad(f"expected a {kind}")
        text = str(value)
        if kind == "path" and not text:
            raise bad("empty path")
        return text
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: .inf in YAML
            raise bad(f"{value!r} is not an integer") from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "false", "no", "0"):
            return str(value).lower() in ("true", "yes", "1")
        raise bad(f"{value!r} is not true or false")
    items = _as_list(value)
    if kind in ("sha256", "sha256_list"):
        items = [str(i).strip().lower() for i in items]
        wrong = [i for i in items if not SHA256_RE.fullmatch(i)]
        if wrong:
            raise bad(f"{wrong[0]!r} is not a sha256 (64 hex digits)")
        if kind == "sha256":
            if len(items) != 1:
                raise bad("expected one sha256")
            return items[0]
        return items
    return [str(i) for i in items]


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        return [w for w in re.split(r"[\s,]+", value) if w]
    return [value]


def bind_inputs(playbook: Playbook, given: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs: given values coerced, defaults filled in; UsageError for unknown or
    missing ones."""
    unknown = sorted(set(given) - set(playbook.inputs))
    if unknown:
        raise UsageError(f"playbook {playbook.name!r} has no input {unknown[0]!r}",
                         hint="its inputs: " + (", ".join(playbook.inputs) or "none"))
    out: dict[str, Any] = {}
    for name, spec in playbook.inputs.items():
        if name in given:
            out[name] = coerce_input(name, spec, given[name])
        elif spec.default is not None:
            out[name] = coerce_input(name, spec, spec.default)
        elif spec.required:
            raise UsageError(f"playbook {playbook.name!r} needs input {name!r}",
                             hint=f"pass --input {name}=VALUE")
        else:
            out[name] = [] if spec.type.endswith("_list") else None
    return out
