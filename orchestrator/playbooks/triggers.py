"""Alerts from a SIEM or EDR, and the registered playbooks whose triggers they match.

Playbooks are registered by putting them in one directory (`LR_PLAYBOOK_DIR`, default the
shipped `playbooks/`). A trigger names alert rules (or none: any rule), may add a condition on
the alert, and says how the alert fills the playbook's inputs, e.g.
`path: alert.indicators.path`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.playbooks.expressions import evaluate, parse_expression, truthy
from orchestrator.playbooks.model import Trigger
from orchestrator.playbooks.start import Started, parse_started
from tasks.errors import LiveResponseError

log = logging.getLogger(__name__)

#: Playbook file names the directory is read for.
PLAYBOOK_GLOBS = ("*.yml", "*.yaml")


class Alert(BaseModel):
    """What a SIEM or EDR posts: the device, the rule that fired, and its indicators."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, max_length=64)
    rule: str = Field(min_length=1, max_length=200)
    indicators: dict[str, Any] = Field(default_factory=dict)
    #: The alert's id in the system that raised it (kept in the audit entry).
    id: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=200)

    def context(self) -> dict[str, Any]:
        return {"alert": self.model_dump(mode="json")}


@dataclass(frozen=True)
class Registered:
    """A playbook file in the directory: parsed, or why it could not be."""

    path: Path
    started: Started | None
    error: str | None = None


def registered_playbooks(directory: Path) -> list[Registered]:
    """Every playbook file of `directory`, by name; an invalid one says why (and is skipped
    by alerts)."""
    files = sorted({f for glob in PLAYBOOK_GLOBS for f in directory.glob(glob)})
    out = []
    for path in files:
        try:
            out.append(Registered(path, parse_started(path.read_text(), path.name)))
        except (OSError, UnicodeDecodeError) as exc:
            out.append(Registered(path, None, f"cannot read {path.name}: {exc}"))
        except LiveResponseError as exc:
            log.warning("registered playbook %s is invalid: %s", path, exc.message)
            out.append(Registered(path, None, exc.message))
    return out


def find_registered(directory: Path, name: str) -> Started | None:
    """The registered playbook called `name`, if any."""
    for item in registered_playbooks(directory):
        if item.started is not None and item.started.playbook.name == name:
            return item.started
    return None


def trigger_inputs(trigger: Trigger, alert: Alert) -> dict[str, Any] | None:
    """The inputs `trigger` takes from `alert`, or None when it does not match the alert.

    Inputs the alert leaves null are left out, so the playbook's defaults apply.
    """
    rules = trigger.rules()
    if rules is not None and alert.rule not in rules:
        return None
    context = alert.context()
    if trigger.when is not None and not truthy(evaluate(_tree(trigger.when), context)):
        return None
    values = {name: evaluate(_tree(text), context) for name, text in trigger.inputs.items()}
    return {name: value for name, value in values.items() if value is not None}


def _tree(text: str) -> Any:
    source = text.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2]
    return parse_expression(source)


def matching(registered: list[Registered], alert: Alert) -> list[tuple[Started, dict[str, Any]]]:
    """The playbooks `alert` starts, each with the inputs of its first matching trigger."""
    out = []
    for item in registered:
        if item.started is None:
            continue
        for trigger in item.started.playbook.triggers:
            inputs = trigger_inputs(trigger, alert)
            if inputs is not None:
                out.append((item.started, inputs))
                break
    return out
