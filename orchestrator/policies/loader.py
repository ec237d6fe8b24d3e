"""Read a policy from YAML: structure checked by pydantic, meaning checked here, errors by line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.policies.model import NAME_RE, PERMISSIONS, TAG_RE, Policy
from tasks.errors import PolicyError
from tasks.registry import REGISTRY

#: Largest policy text we read (a policy is a page of YAML, not a data set).
MAX_POLICY_BYTES = 256 * 1024

Loc = tuple[str | int, ...]


def read_policy_text(path: Path) -> str:
    """The text of a policy file; PolicyError naming the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {str(path)!r}: {exc}") from None


def load_policy_file(path: Path) -> Policy:
    """The policy in `path`; PolicyError naming the file, line and field of the first problem."""
    return parse_policy(read_policy_text(path), source=str(path))


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse and validate policy YAML; PolicyError with `source:line: field: problem`."""
    if len(text.encode("utf-8", "replace")) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: larger than {MAX_POLICY_BYTES // 1024} KiB")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{source}{line}: not valid YAML: {problem}",
                          hint="fix the YAML syntax at that line") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy is a mapping with at least 'roles'",
                          hint="see config/policy.example.yaml")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        raise _error(source, root, loc, first["msg"]) from None
    for loc, problem in semantic_problems(policy):
        raise _error(source, root, loc, problem)
    return policy


def semantic_problems(policy: Policy) -> Iterator[tuple[Loc, str]]:
    """What is wrong with a structurally valid policy, as (field location, problem)."""
    if not policy.roles:
        yield ("roles",), "the policy defines no roles: it grants nothing"
        return
    groups = set(policy.groups) if policy.groups is not None else None
    for i, group in enumerate(policy.groups or []):
        if not TAG_RE.fullmatch(group):
            yield ("groups", i), f"invalid group {group!r} (use 1-64 of [A-Za-z0-9._:/-])"
    for name, role in policy.roles.items():
        if not NAME_RE.fullmatch(name):
            yield ("roles", name), f"invalid role name {name!r} (use 1-64 of [a-z0-9._-])"
        for i, perm in enumerate(role.permissions):
            if perm not in PERMISSIONS:
                yield (("roles", name, "permissions", i),
                       f"unknown permission {perm!r} (known: {', '.join(PERMISSIONS)})")
        for i, parent in enumerate(role.inherits):
            if parent not in policy.roles:
                yield (("roles", name, "inherits", i),
                       f"unknown role {parent!r} (defined: {', '.join(policy.roles)})")
        for i, scope in enumerate(role.scopes or []):
            if groups is not None and scope not in groups:
                yield ("roles", name, "scopes", i), _unknown_group(scope, groups)
        if role.scopes is not None and not role.scopes:
            yield ("roles", name, "scopes"), "an empty scope list binds the role to no device"
        if not policy.role_permissions(name):
            yield ("roles", name), f"role {name!r} grants nothing (no permission, own or inherited)"
    for i, rule in enumerate(policy.approvals):
        for j, command in enumerate(rule.commands):
            if command not in REGISTRY:
                yield (("approvals", i, "commands", j),
                       f"unknown command {command!r} (known: {', '.join(REGISTRY)})")
        for j, tag in enumerate(rule.device_tags):
            if groups is not None and tag not in groups:
                yield ("approvals", i, "device_tags", j), _unknown_group(tag, groups)


def _unknown_group(tag: str, groups: set[str]) -> str:
    known = ", ".join(sorted(groups)) or "none"
    return f"unknown group {tag!r} (declared in 'groups': {known})"


def _error(source: str, root: yaml.Node | None, loc: Loc, problem: str) -> PolicyError:
    where = _dotted(loc)
    line = _line_of(root, loc)
    prefix = f"{source}:{line}" if line else source
    return PolicyError(f"{prefix}: {where}: {problem}",
                       hint="fix that field and load the policy again")


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "policy"


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the deepest YAML node on the path `loc` (pydantic's error location)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            key, node = match
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def dump_policy(policy: Policy) -> str:
    """The policy as YAML (what `lr admin policy show` prints)."""
    data: dict[str, Any] = policy.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
