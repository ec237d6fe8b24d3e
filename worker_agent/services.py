"""Handler of `services`: the endpoint's services and their states.

With systemd running (and the persistence root the live "/"), states come from `systemctl
list-units`. Without it (containers, a mounted image as the root), the unit files under the
persistence root are listed with their enabled state, and the result says the states are not
live. Neither systemd nor unit files: a clear error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tasks.commands.persistence import ServiceInfo, ServicesArgs, ServicesResult
from tasks.errors import CommandFailedError, UnsupportedOnEndpointError
from worker_agent import systemd_units as su
from worker_agent.context import CommandContext

#: Present when systemd is the running init (what sd_booted() checks).
SYSTEMD_RUNNING_MARKER = Path("/run/systemd/system")
#: How long systemctl may take to answer.
SYSTEMCTL_TIMEOUT_S = 20.0
LIST_UNITS_ARGV = ("systemctl", "list-units", "--type=service", "--all", "--no-legend",
                   "--plain", "--no-pager")


def run_services(args: ServicesArgs, ctx: CommandContext) -> ServicesResult:
    """Live service states from systemd, or the unit files under the persistence root."""
    if sys.platform != "linux":
        raise UnsupportedOnEndpointError(f"services is not supported on {sys.platform} yet")
    root = Path(ctx.settings.persistence_root)
    if systemd_running() and os.path.realpath(root) == "/":
        return ServicesResult(source="systemd", services=list_units())
    services = unit_file_services(root)
    if not services:
        raise UnsupportedOnEndpointError(
            f"systemd is not running on this endpoint, and no service unit files are under {root}",
            hint="use 'processes' to see what runs")
    return ServicesResult(
        source="unit-files", services=services,
        note=(f"systemd is not running on this endpoint: these are the unit files under {root} "
              "with their enabled state; whether each runs is unknown (see 'processes')"))


def systemd_running() -> bool:
    """Whether systemd is this endpoint's service manager."""
    return SYSTEMD_RUNNING_MARKER.is_dir()


def list_units() -> list[ServiceInfo]:
    """Every service unit systemd knows, with its load, active and sub state."""
    try:
        done = subprocess.run(LIST_UNITS_ARGV, capture_output=True, text=True,
                              timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandFailedError(f"systemctl could not be run: {exc}") from None
    if done.returncode != 0:
        raise CommandFailedError(f"systemctl failed: {done.stderr.strip()[:300]}")
    return parse_list_units(done.stdout)


def parse_list_units(text: str) -> list[ServiceInfo]:
    """Rows of `systemctl list-units --no-legend --plain`: UNIT LOAD ACTIVE SUB DESCRIPTION."""
    services = []
    for line in text.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 4:
            continue
        services.append(ServiceInfo(name=parts[0], load=parts[1], active=parts[2],
                                    sub=parts[3], description=parts[4] if len(parts) > 4 else ""))
    return services


def unit_file_services(root: Path) -> list[ServiceInfo]:
    """Each service unit file under `root` once (the most specific directory wins)."""
    found: dict[str, ServiceInfo] = {}
    for unit, state in su.system_units(root):
        if not unit.name.endswith(".service") or unit.name in found:
            continue
        found[unit.name] = ServiceInfo(
            name=unit.name, load=state, active="unknown", sub="unknown",
            description=(unit.fields.get("Description") or [""])[-1],
            path="/" + unit.path.relative_to(root).as_posix(), exec_start=unit.exec_start)
    return sorted(found.values(), key=lambda s: s.name)
