"""Human rendering of lists the API returns: devices, sessions, audit entries, who am I."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.cli.table import MISSING, clean, format_age, format_table, format_time, shorten
from tasks import clock

#: Widest details cell of an audit listing.
DETAILS_WIDTH = 100
#: Audit detail keys shown first, most telling first; the rest follow in stored order.
DETAIL_ORDER = (
    "command",
    "line",
    "session",
    "device",
    "command_id",
    "reason",
    "message",
    "error",
    "user",
)


def render_devices(devices: list[dict[str, Any]]) -> str:
    """The device table."""
    if not devices:
        return "no devices (none registered, or none matches; start lr-agent on an endpoint)"
    now = clock.now()
    rows = [
        [
            d.get("id"),
            "yes" if d.get("online") else "no",
            format_age(d.get("last_seen"), now),
            d.get("platform"),
            d.get("hostname"),
            d.get("agent_version") or MISSING,
            d.get("open_sessions", 0),
            ",".join(clean(t) for t in d.get("tags") or []) or MISSING,
            format_isolation(d),
        ]
        for d in devices
    ]
    return format_table(
        ["ID", "ONLINE", "LAST SEEN", "PLATFORM", "HOSTNAME", "AGENT", "SESSIONS", "GROUPS",
         "ISOLATION"], rows, right=[6])


def format_isolation(device: dict[str, Any]) -> str:
    """`none`, or `full since 2025-03-01 14:02:11 by alice` (selective adds what it allows)."""
    mode = clean(device.get("isolation") or "none")
    if mode == "none":
        return mode
    allow = device.get("isolation_allow") or []
    if allow:
        mode += " (" + ", ".join(clean(a) for a in allow) + ")"
    since = format_time(device.get("isolated_since"))
    shown = f"{mode} since {since} by {clean(device.get('isolated_by'))}"
    if device.get("isolation_table") == "missing":
        # The agent found its firewall table gone (flushed, a reboot): not isolated in fact.
        shown += "; TABLE MISSING: not isolated (run lr isolate again)"
    return shown


def render_sessions(sessions: list[dict[str, Any]]) -> str:
    """The session table."""
    if not sessions:
        return "no sessions (open one with 'lr session open DEVICE')"
    now = clock.now()
    rows = [
        [
            s.get("id"),
            s.get("device_id"),
            s.get("user"),
            s.get("state"),
            format_time(s.get("created_at")),
            format_age(s.get("last_active"), now),
            s.get("cwd") or MISSING,
        ]
        for s in sessions
    ]
    return format_table(["ID", "DEVICE", "USER", "STATE", "OPENED", "LAST ACTIVE", "CWD"], rows)


def render_audit(entries: list[dict[str, Any]]) -> str:
    """Audit entries, oldest first, one per line."""
    if not entries:
        return "no audit entries match"
    rows = [
        [
            format_time(e.get("ts")),
            e.get("actor"),
            e.get("action"),
            e.get("target"),
            e.get("decision"),
            shorten(_details(e.get("details") or {}), DETAILS_WIDTH),
        ]
        for e in entries
    ]
    return format_table(["TIME", "ACTOR", "ACTION", "TARGET", "DECISION", "DETAILS"], rows)


def _details(details: dict[str, Any]) -> str:
    keys = [k for k in DETAIL_ORDER if k in details]
    keys += [k for k in details if k not in DETAIL_ORDER]
    return " ".join(f"{k}={_detail_value(details[k])}" for k in keys if details[k] is not None)


def _detail_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return json.dumps(text) if (" " in text or not text) else text


def render_verdict(verdict: dict[str, Any]) -> str:
    """One line: the chain is sound, or where it breaks."""
    entries = verdict.get("entries", 0)
    if verdict.get("ok"):
        trimmed = f" ({verdict['trimmed']} older ones trimmed)" if verdict.get("trimmed") else ""
        return (
            f"audit chain ok: {entries} entries{trimmed}, head {clean(verdict.get('head'))[:16]}…"
        )
    places = [f"line {verdict['line']}" if verdict.get("line") else ""]
    places.append(f"entry {clean(verdict['entry_id'])}" if verdict.get("entry_id") else "")
    where = " at " + ", ".join(p for p in places if p) if any(places) else ""
    return f"audit chain broken{where}: {clean(verdict.get('problem'))}"


def render_whoami(me: dict[str, Any]) -> str:
    """`name (roles: a, b@group:web)`: each role, with the device group it is limited to."""
    return f"{clean(me.get('user'))} (roles: {format_grants(me)})"


def format_grants(user: dict[str, Any]) -> str:
    """`a, b@group:web` from a user's grants (or plain role names when no grants are given)."""
    grants = user.get("grants")
    if grants is None:
        names = [clean(r) for r in user.get("roles") or []]
    else:
        names = [clean(g.get("role")) + (f"@{clean(g['scope'])}" if g.get("scope") else "")
                 for g in grants]
    return ", ".join(names) or "none"
