"""Command-line templates: `getfilehash {{ inputs.path }}`, each value shell-quoted as ONE word.

A template is literal text with `{{ expression }}` placeholders (the expression language of
`playbooks.expressions`). Every placeholder must stand as a whole word of the line, never in
the command's name: its value is inserted with `shlex.quote`, and the line is then parsed by
`tasks.parsing.parse_line` like any analyst's line. Nothing ever reaches a shell; a value
such as `a; rm -rf /` is one argument, and a value starting with `-` (which the line's parser
would take for an option) is refused.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.playbooks.expressions import (
    ExpressionError,
    Node,
    Ref,
    evaluate,
    parse_expression,
    refs,
)
from tasks.errors import UsageError
from tasks.parsing import parse_line, split_line
from tasks.registry import REGISTRY

_PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
#: Stands for a placeholder while the template's shape is checked.
_SENTINEL = "\x00lr-placeholder-{}\x00"


class RenderError(UsageError):
    """Raised when a template's value cannot become a command-line word (null, a list...)."""

    code = "render_failed"


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and expression trees, in order."""

    source: str
    parts: tuple[str | Node, ...]

    def expressions(self) -> list[Node]:
        return [p for p in self.parts if not isinstance(p, str)]

    def refs(self) -> list[Ref]:
        return [r for node in self.expressions() for r in refs(node)]


def parse_template(source: str) -> Template:
    """The template's parts; ExpressionError for a placeholder that does not parse."""
    parts: list[str | Node] = []
    pos = 0
    for match in _PLACEHOLDER_RE.finditer(source):
        parts.append(source[pos:match.start()])
        inner = match.group(1).strip()
        try:
            parts.append(parse_expression(inner))
        except ExpressionError as exc:
            # repr: the placeholder's text may hold control characters; the message stays one line.
            raise ExpressionError(f"in the placeholder {inner!r}: {exc.message}",
                                  hint=exc.hint) from None
        pos = match.end()
    tail = source[pos:]
    if "{{" in tail or "}}" in tail:
        raise ExpressionError("unbalanced '{{' or '}}'",
                              hint="write placeholders as {{ inputs.NAME }}")
    parts.append(tail)
    return Template(source, tuple(p for p in parts if p != ""))


def check_line_template(template: Template) -> None:
    """The template names a known command, literally, and each placeholder is a whole word.

    A template without placeholders is parsed in full (usage errors show now, not at run time);
    otherwise the command's name and its `--options` are checked.
    """
    sentinels: list[str] = []
    shaped: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            shaped.append(part)
        else:
            sentinels.append(_SENTINEL.format(len(sentinels)))
            shaped.append(sentinels[-1])
    joined = "".join(shaped)
    for sentinel in sentinels:
        at = joined.index(sentinel)
        before, after = joined[at - 1:at], joined[at + len(sentinel):at + len(sentinel) + 1]
        if before.strip() or after.strip():
            raise UsageError("a placeholder must be a whole word of the line",
                             hint="write '--path {{ inputs.dir }}', not '--path={{ inputs.dir }}'"
                                  " or a placeholder inside quotes")
    words = split_line(joined)
    if not words:
        raise UsageError("empty command line")
    if any(s in words[0] for s in sentinels):
        raise UsageError("the command's name must be written out, not a placeholder")
    spec = REGISTRY.get(words[0])
    if spec is None:
        raise UsageError(f"unknown command {words[0]!r}",
                         hint="known commands: " + ", ".join(REGISTRY))
    if not sentinels:
        parse_line(template.source)
        return
    flags = {o.flag for o in spec.options}
    for word in words[1:]:
        if word == "--":
            break
        name = word.partition("=")[0]
        if word.startswith("--") and name not in flags:
            raise UsageError(f"{spec.name}: unknown option {name!r}", hint=f"usage: {spec.usage}")


def word_of(value: Any, what: str) -> str:
    """One value as one shell-quoted word; RenderError for what is not a scalar."""
    if value is None:
        raise RenderError(f"{what} has no value (null)",
                          hint="an earlier step may have failed or returned no such field")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        kind = "a list" if isinstance(value, list) else type(value).__name__
        raise RenderError(f"{what} is {kind}, not one value",
                          hint="iterate over a list with for_each and use {{ item }}")
    text = str(value)
    if text.startswith("-"):
        # Quoting keeps it one word, but the command's parser would still read it as an option.
        raise RenderError(f"{what} is {text[:40]!r}, which starts with '-' and would be read "
                          "as an option", hint="an input must not start with '-'")
    return shlex.quote(text)


def render_line(template: Template, context: Mapping[str, Any]) -> str:
    """The command line: literal text as written, every placeholder's value quoted."""
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            what = _describe(part)
            out.append(word_of(evaluate(part, context), what))
    return "".join(out)


def _describe(node: Node) -> str:
    return ".".join(node.path) if isinstance(node, Ref) else "a placeholder"
