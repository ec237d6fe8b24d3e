"""Arguments and results of the autostart commands: persistence and services."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.commands.base import CommandArgs, CommandResult

#: Where an item makes something start: the place an intruder would plant it.
PersistenceKind = Literal[
    "cron",
    "user-crontab",
    "systemd",
    "systemd-dropin",
    "systemd-user",
    "rc.local",
    "init.d",
    "profile.d",
    "shell-rc",
    "authorized_keys",
    "ld.so.preload",
]
#: A small, typed summary of an item's content.
DetailValue = str | bool | list[str]


class PersistenceArgs(CommandArgs):
    #: Only items of this kind.
    kind: PersistenceKind | None = None


class PersistenceItem(CommandResult):
    kind: PersistenceKind
    #: Path as seen on the endpoint (relative to the configured persistence root).
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    owner: str | None = None
    uid: int | None = None
    mode: str | None = None
    size_bytes: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    link_target: str | None = None
    #: e.g. cron lines, ExecStart and enabled state of a unit, authorized key types.
    detail: dict[str, DetailValue] = Field(default_factory=dict)
    #: Why (part of) this item could not be read; the item is still listed.
    error: str | None = None


class PersistenceResult(CommandResult):
    root: str
    items: list[PersistenceItem]
    #: Places that exist but could not be listed (permission, vanished).
    unreadable: int = 0


class ServicesArgs(CommandArgs):
    pass


class ServiceInfo(CommandResult):
    name: str
    #: systemd: load state; unit files: "enabled", "disabled", "masked", "static", "linked".
    load: str
    #: systemd: active state ("active", "failed", ...); unit files: "unknown".
    active: str
    #: systemd: sub state ("running", "exited", ...); unit files: "unknown".
    sub: str
    description: str = ""
    #: For unit files: where the unit was found (relative to the persistence root).
    path: str | None = None
    exec_start: list[str] = Field(default_factory=list)


class ServicesResult(CommandResult):
    #: "systemd" (live states from systemctl) or "unit-files" (systemd not running here).
    source: Literal["systemd", "unit-files"]
    services: list[ServiceInfo]
    #: Said when the listing is not live: why, and what the states mean.
    note: str | None = None
