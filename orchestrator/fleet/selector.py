"""Device selectors: `finance-lap01,tag:group:web` names devices by id and by tag.

A selector is a comma list of terms; a term is a device id or `tag:NAME` (every registered
device carrying tag NAME). The devices are returned once each, in the order first named, and
a term that names nothing is an error that says which term it was: a fleet-wide command
never silently runs on fewer devices than the analyst meant.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.policies.model import TAG_RE
from orchestrator.state.devices import Device, DeviceRegistry
from tasks.errors import UnknownDeviceError, UsageError
from tasks.queues import validate_device_id

#: Prefix of a term that names a tag rather than a device id.
TAG_PREFIX = "tag:"
#: Most devices one selector may name (a typo should not address the whole fleet twice).
MAX_SELECTED = 100_000


def parse_selector(selector: str) -> list[str]:
    """The selector's terms, stripped, empty ones dropped; UsageError when malformed."""
    terms = [t.strip() for t in selector.split(",")]
    terms = [t for t in terms if t]
    if not terms:
        raise UsageError("empty device selector",
                         hint="name devices by id and by tag, e.g. 'tag:group:web,lap01'")
    for term in terms:
        if term.startswith(TAG_PREFIX):
            tag = term[len(TAG_PREFIX):]
            if not TAG_RE.fullmatch(tag):
                raise UsageError(f"invalid tag in selector term {term!r}",
                                 hint="a tag is 1-64 of [A-Za-z0-9._:/-], e.g. tag:group:web")
        else:
            validate_device_id(term)
    return terms


def select(devices: Sequence[Device], selector: str) -> list[Device]:
    """The devices `selector` names, from `devices` (the registry's list), first-named order."""
    by_id = {d.id: d for d in devices}
    chosen: dict[str, Device] = {}
    for term in parse_selector(selector):
        if term.startswith(TAG_PREFIX):
            tag = term[len(TAG_PREFIX):]
            tagged = [d for d in devices if tag in d.tags]
            if not tagged:
                raise UnknownDeviceError(
                    f"no registered device carries tag {tag!r} (selector term {term!r})",
                    hint="see the tags with 'lr devices'; set them with 'lr admin device tag'")
            for device in tagged:
                chosen.setdefault(device.id, device)
        else:
            if term not in by_id:
                raise UnknownDeviceError(
                    f"unknown device {term!r} in the selector",
                    hint="run 'lr devices' to see registered devices")
            chosen.setdefault(term, by_id[term])
    if len(chosen) > MAX_SELECTED:
        raise UsageError(f"the selector names {len(chosen)} devices, over {MAX_SELECTED}",
                         hint="narrow it with tags")
    return list(chosen.values())


def resolve(registry: DeviceRegistry, selector: str) -> list[Device]:
    """The registered devices `selector` names (one registry read for the whole fleet)."""
    parse_selector(selector)  # a malformed selector fails before Redis is read
    return select(registry.list(), selector)
