"""What the orchestrator records once a command completed: the session's cwd, the device's
isolation. Each takes its command's result model; the command table says which runs when."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.commands.filesystem import CdResult
from tasks.commands.isolation import IsolateResult, ReleaseResult

if TYPE_CHECKING:
    from orchestrator.commands.records import CommandRecord
    from orchestrator.plane import ControlPlane


def set_session_cwd(plane: ControlPlane, done: CommandRecord, result: CdResult) -> None:
    """After `cd`: the session's next commands run in the directory the agent resolved."""
    plane.sessions.set_cwd(done.session_id, result.cwd)


def record_isolation(plane: ControlPlane, done: CommandRecord, result: IsolateResult) -> None:
    """After `isolate`: the device is marked isolated (mode, what it still reaches), audited."""
    allowed = list(result.allowed)
    plane.devices.set_isolation(done.device_id, result.mode, done.user, allowed)
    plane.audit.append(done.user, "device.isolated", done.device_id, "allowed",
                       device=done.device_id, command_id=done.command_id,
                       mode=result.mode, allowed=allowed, approved_by=done.decided_by)


def record_release(plane: ControlPlane, done: CommandRecord, result: ReleaseResult) -> None:
    """After `release`: the device is marked not isolated (whether a table was there or not),
    audited."""
    plane.devices.clear_isolation(done.device_id)
    plane.audit.append(done.user, "device.released", done.device_id, "allowed",
                       device=done.device_id, command_id=done.command_id,
                       approved_by=done.decided_by)
