"""One short line saying what a step's command found or did, for `lr playbook show`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.commands.records import CommandRecord
from tasks.envelope import CommandStatus

#: Widest summary kept.
SUMMARY_CHARS = 120


def _count(field: str, what: str) -> Callable[[dict[str, Any]], str]:
    def summary(r: dict[str, Any]) -> str:
        return f"{len(r.get(field) or [])} {what}"

    return summary


_BY_COMMAND: dict[str, Callable[[dict[str, Any]], str]] = {
    "getfilehash": lambda r: f"sha256 {r.get('sha256') or r.get('sha1') or r.get('md5')}",
    "fileinfo": lambda r: f"{r.get('type')} {r.get('size_bytes')} bytes sha256 {r.get('sha256')}",
    "getfile": lambda r: (f"stored {r.get('size_bytes')} bytes, sha256 "
                          f"{r.get('evidence_sha256') or r.get('sha256')}"),
    "processes": lambda r: ", ".join(
        f"{p.get('pid')} {p.get('name')}" for p in (r.get("processes") or [])[:5]
    ) if 0 < len(r.get("processes") or []) <= 5 else f"{len(r.get('processes') or [])} processes",
    "kill": lambda r: f"pid {r.get('pid')} {r.get('name')} {r.get('signal')}, "
                      f"{'ended' if r.get('ended') else 'still running'}",
    "remediate": lambda r: f"quarantined {r.get('path')} as {r.get('qid')}",
    "undo": lambda r: f"restored {r.get('path')}",
    "netstat": _count("connections", "connections"),
    "persistence": _count("items", "autostart items"),
    "services": _count("services", "services"),
    "findfile": _count("matches", "matches"),
    "dir": _count("entries", "entries"),
}
_BY_COMMAND.update({
    "modules": _count("modules", "kernel modules"),
    "mounts": _count("mounts", "mounts"),
    "interfaces": _count("interfaces", "interfaces"),
    "env": _count("variables", "variables"),
    "history": _count("files", "history files"),
    "memdump": lambda r: (f"dumped {len(r.get('regions') or [])} regions, "
                          f"{r.get('size_bytes')} bytes, sha256 "
                          f"{r.get('evidence_sha256') or r.get('sha256')}"),
    "collect": lambda r: (f"archived {len(r.get('members') or [])} entries, "
                          f"{r.get('size_bytes')} bytes, sha256 "
                          f"{r.get('evidence_sha256') or r.get('sha256')}"),
})


def summarize(record: CommandRecord) -> str:
    """What the command's result says, in a few words (its error when it did not complete)."""
    if record.status is not CommandStatus.COMPLETED:
        return record.error.message[:SUMMARY_CHARS] if record.error else record.status.value
    if record.result is None:
        return ""
    shape = _BY_COMMAND.get(record.command)
    try:
        text = shape(record.result) if shape else ", ".join(sorted(record.result))
    except (AttributeError, TypeError):
        text = ""
    return text[:SUMMARY_CHARS]
