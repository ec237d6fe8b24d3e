"""The playbooks' tiny expression language: dotted look-ups, literals, comparisons, and/or/not.

Never Jinja, never `eval`: a hand-written tokenizer and recursive-descent parser build a small
tree, and `evaluate` walks it over plain JSON data. What it can do is all there is:

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | "in" | "not in") operand)?
    operand := NAME ("." NAME | "." INT)* | STRING | NUMBER | true | false | null
               | "[" (expr ("," expr)*)? "]" | "(" expr ")"

A look-up of something missing (a key, an index, a step with no result) is `null`, so a
condition on a step that failed is simply false; rendering `null` into a line is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.errors import UsageError

#: Longest expression we parse (a condition, not a program).
MAX_EXPRESSION_CHARS = 2000
#: Deepest nesting of parentheses, lists and `not`.
MAX_DEPTH = 32

_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|[.\[\](),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


class ExpressionError(UsageError):
    """Raised when an expression does not parse, or names something it may not."""

    code = "bad_expression"


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Ref:
    """A dotted look-up, e.g. ("steps", "hash", "result", "sha256")."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class ListOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class BoolOp:
    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Literal | Ref | ListOf | Compare | BoolOp | Not


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ExpressionError(f"unexpected character {text[pos]!r} at {pos + 1}",
                                  hint="an expression holds names, literals, ==, !=, in, "
                                       "not in, and, or, not, (), []")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
        self.tokens = _tokens(text)
        self.pos = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def at(self, value: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token[1] == value and token[0] in ("name", "op")

    def take(self, value: str) -> None:
        if not self.at(value):
            got = self.peek()
            raise ExpressionError(f"expected {value!r}, found "
                                  f"{got[1]!r}" if got else f"expected {value!r} at the end")
        self.pos += 1

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty expression")
        node = self.parse_or()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested deeper than {MAX_DEPTH}")

    def parse_or(self) -> Node:
        return self._chain("or", self.parse_and)

    def parse_and(self) -> Node:
        return self._chain("and", self.parse_not)

    def _chain(self, op: str, sub: Any) -> Node:
        operands = [sub()]
        while self.at(op):
            self.pos += 1
            operands.append(sub())
        return operands[0] if len(operands) == 1 else BoolOp(op, tuple(operands))

    def parse_not(self) -> Node:
        if self.at("not") and not self.at("in", 1):
            self.pos += 1
            self.nested()
            return Not(self.parse_not())
        return self.parse_compare()

    def parse_compare(self) -> Node:
        left = self.parse_operand()
        for op in ("==", "!=", "in"):
            if self.at(op):
                self.pos += 1
                return Compare(op, left, self.parse_operand())
        if self.at("not") and self.at("in", 1):
            self.pos += 2
            return Compare("not in", left, self.parse_operand())
        return left

    def parse_operand(self) -> Node:
        token = self.peek()
        if token is None:
            raise ExpressionError("the expression ends where a value was expected")
        kind, text = token
        self.pos += 1
        if kind == "number":
            return Literal(float(text) if "." in text else int(text))
        if kind == "string":
            return Literal(_unquote(text))
        if text == "(":
            self.nested()
            node = self.parse_or()
            self.take(")")
            return node
        if text == "[":
            self.nested()
            items: list[Node] = []
            while not self.at("]"):
                items.append(self.parse_or())
                if not self.at("]"):
                    self.take(",")
            self.take("]")
            return ListOf(tuple(items))
        if kind == "name" and text in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[text])
        if kind == "name" and text not in _KEYWORDS:
            path = [text]
            while self.at("."):
                self.pos += 1
                part = self.peek()
                if part is None or part[0] not in ("name", "number") or part[1].startswith("-"):
                    raise ExpressionError(f"a name must follow '.' after {'.'.join(path)}")
                path.append(part[1])
                self.pos += 1
            return Ref(tuple(path))
        raise ExpressionError(f"unexpected {text!r} where a value was expected")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def parse_expression(text: str) -> Node:
    """The tree of `text`; ExpressionError saying what is wrong."""
    return _Parser(text).parse()


def refs(node: Node) -> Iterator[Ref]:
    """Every look-up in the tree (what validation checks against the playbook)."""
    if isinstance(node, Ref):
        yield node
    elif isinstance(node, ListOf):
        for item in node.items:
            yield from refs(item)
    elif isinstance(node, Compare):
        yield from refs(node.left)
        yield from refs(node.right)
    elif isinstance(node, BoolOp):
        for operand in node.operands:
            yield from refs(operand)
    elif isinstance(node, Not):
        yield from refs(node.operand)


def lookup(data: Any, path: Sequence[str]) -> Any:
    """Walk `path` through mappings (keys) and lists (indexes); None where it leads nowhere."""
    value = data
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else None
        else:
            return None
    return value


def evaluate(node: Node, context: Mapping[str, Any]) -> Any:
    """The value of the tree over `context` (plain JSON data)."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Ref):
        return lookup(context, node.path)
    if isinstance(node, ListOf):
        return [evaluate(item, context) for item in node.items]
    if isinstance(node, Not):
        return not truthy(evaluate(node.operand, context))
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(truthy(evaluate(o, context)) for o in node.operands)
        return any(truthy(evaluate(o, context)) for o in node.operands)
    left, right = evaluate(node.left, context), evaluate(node.right, context)
    if node.op == "==":
        return left == right
    if node.op == "!=":
        return left != right
    found = _contains(right, left)
    return found if node.op == "in" else not found


def _contains(container: Any, value: Any) -> bool:
    """`value in container` for lists, strings and mappings (keys); a missing container holds
    nothing."""
    if value is None or container is None:
        return False
    if isinstance(container, str):
        return isinstance(value, str) and value in container
    if isinstance(container, list):
        return value in container
    if isinstance(container, Mapping):
        return isinstance(value, str) and value in container
    return False


def truthy(value: Any) -> bool:
    """What counts as true in a condition: Python's notion over JSON values."""
    return bool(value)
