"""Turn an analyst's command line into a command spec and its validated argument model."""

from __future__ import annotations

import shlex

from pydantic import ValidationError

from tasks.commands.base import CommandArgs
from tasks.errors import UnknownCommandError, UsageError
from tasks.registry import REGISTRY, CommandSpec, Registry


def split_line(line: str) -> list[str]:
    """Split a line as a POSIX shell would, without ever running one."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot parse command line: {exc}") from None


def parse_line(line: str, registry: Registry = REGISTRY) -> tuple[CommandSpec, CommandArgs]:
    """Parse `line` into (spec, args); raise UsageError naming what is wrong and the usage."""
    words = split_line(line)
    if not words:
        raise UsageError("empty command line", hint="type 'help' for the list of commands")
    name, rest = words[0], words[1:]
    spec = registry.get(name)
    if spec is None:
        raise UnknownCommandError(
            f"unknown command {name!r}",
            hint="known commands: " + ", ".join(registry),
        )
    return spec, parse_args(spec, rest)


def parse_args(spec: CommandSpec, words: list[str]) -> CommandArgs:
    """Map words onto the spec's positionals and options and validate the argument model."""
    fields = spec.args_model.model_fields
    by_flag = {o.flag: o for o in spec.options}
    values: dict[str, object] = {}
    positionals: list[str] = []
    i = 0
    only_positionals = False
    while i < len(words):
        word = words[i]
        if word == "--" and spec.rest:
            # Everything after `--` is the command's own (a script's arguments), verbatim.
            values[spec.rest] = tuple(words[i + 1:])
            break
        if only_positionals or not word.startswith("--") or word == "-":
            positionals.append(word)
        elif word == "--":
            only_positionals = True
        else:
            flag, eq, inline = word.partition("=")
            opt = by_flag.get(flag)
            if opt is None:
                raise _usage(spec, f"unknown option {flag!r}")
            if fields[opt.field].annotation is bool:
                if eq:
                    raise _usage(spec, f"option {flag} takes no value")
                values[opt.field] = True
            elif eq:
                values[opt.field] = inline
            else:
                i += 1
                if i >= len(words):
                    raise _usage(spec, f"option {flag} needs a value")
                values[opt.field] = words[i]
        i += 1
    if len(positionals) > len(spec.positionals):
        extra = " ".join(positionals[len(spec.positionals):])
        after = f" (put {spec.rest.upper()} after --)" if spec.rest else ""
        if not after and any(w.startswith("-") and w != "-" for w in positionals):
            after = " (options are written in full with --: see the usage)"
        raise _usage(spec, f"unexpected argument(s): {extra}{after}")
    for name, word in zip(spec.positionals, positionals, strict=False):
        values[name] = word
    missing = [p for p in spec.positionals[len(positionals):] if p not in spec.optional_positionals]
    if missing:
        raise _usage(spec, "missing " + ", ".join(m.upper() for m in missing))
    try:
        return spec.args_model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or spec.name
        message = str(first["msg"]).removeprefix("Value error, ")
        raise _usage(spec, f"bad value for {where}: {message}") from None


def _usage(spec: CommandSpec, problem: str) -> UsageError:
    return UsageError(f"{spec.name}: {problem}", hint=f"usage: {spec.usage}")
