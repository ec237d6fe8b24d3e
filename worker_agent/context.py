"""What a command handler gets besides its arguments: where it runs and who it must not harm."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.settings import Settings
from tasks.errors import PathNotFoundError, UnsupportedOnEndpointError
from tasks.keys import Keys


@dataclass(frozen=True)
class BrokerEndpoint:
    """One address and TCP port the agent reaches its broker at."""

    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class CommandContext:
    """Per-command facts a handler may use; handlers never reach for globals."""

    device_id: str
    #: The session's working directory; relative paths resolve against it.
    cwd: str | None = None
    #: Pids a handler must never end: the agent's own processes and its parent.
    protected_pids: frozenset[int] = field(default_factory=frozenset)
    #: Largest result we return; handlers that list things stop early past it.
    output_max_bytes: int = 4 * 1024 * 1024
    #: Where the broker is (empty for a unix socket); None when unknown, so isolation refuses.
    broker_endpoints: tuple[BrokerEndpoint, ...] | None = None
    #: The command's id (also names its file transfer stream, if it has one).
    command_id: str = ""
    #: The agent's Redis client and key names, for commands that move bytes over the broker.
    client: Any = None
    keys: Keys = field(default_factory=Keys)
    #: The agent's settings (limits, data directory, configurable roots).
    settings: Settings = field(default_factory=Settings)

    def resolve(self, path: str) -> Path:
        """`path` made absolute against the session cwd (no symlink resolution, no I/O)."""
        expanded = os.path.expanduser(path)
        base = self.cwd or os.getcwd()
        return Path(os.path.normpath(os.path.join(base, expanded)))

    def system_root(self, command: str) -> Path:
        """The root `command` reads system files under (`LR_SYSTEM_ROOT`); refused on anything
        but Linux, or when the root is not a directory."""
        if sys.platform != "linux":
            raise UnsupportedOnEndpointError(f"{command} is not supported on {sys.platform} yet")
        root = Path(self.settings.system_root)
        if not root.is_dir():
            raise PathNotFoundError(f"the system root {root} is not a directory",
                                    hint="check LR_SYSTEM_ROOT on the agent")
        return root
