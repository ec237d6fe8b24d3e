"""While a device is isolated, only commands the registry allows while isolated may run."""

from __future__ import annotations

from orchestrator.state.devices import Device
from tasks.errors import PermissionDeniedError
from tasks.registry import CommandSpec


def check_isolation(device: Device, spec: CommandSpec) -> None:
    """Raise PermissionDeniedError when `spec` may not run on the isolated `device`."""
    if device.isolation not in ("", "none") and not spec.allowed_while_isolated:
        raise PermissionDeniedError(
            f"device {device.id!r} is isolated; {spec.name!r} is not allowed while isolated",
            hint="release the device first, or use a command allowed during isolation",
        )
