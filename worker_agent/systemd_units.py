"""systemd unit files read from disk: their fields, and whether each is enabled, static or masked.

Used by `persistence` (units, timers, drop-ins) and by `services` when systemd is not running.
Everything is read under a root directory (the persistence root), never from the live manager.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Unit types that start code, the ones an intruder plants.
UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path")
#: System unit directories, relative to the root, most specific first (as systemd reads them).
SYSTEM_UNIT_DIRS = ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")
#: Global user unit directory, relative to the root.
GLOBAL_USER_UNIT_DIR = "etc/systemd/user"
#: A home's own user units, relative to the home.
HOME_USER_UNIT_DIR = ".config/systemd/user"
#: Bytes of a unit file we parse; unit files are small, anything beyond is not read.
UNIT_READ_BYTES = 64 * 1024
#: Keys of the [Install] section: a unit without any is "static".
INSTALL_KEYS = ("WantedBy", "RequiredBy", "UpheldBy", "Alias", "Also")


@dataclass
class UnitFile:
    """One unit file (or unit symlink) found under a unit directory."""

    name: str
    path: Path
    #: Fields by key, values in file order; an empty assignment resets the list (as systemd).
    fields: dict[str, list[str]] = field(default_factory=dict)
    link_target: str | None = None
    #: Why the file could not be read, if it could not.
    error: str | None = None

    @property
    def exec_start(self) -> list[str]:
        return self.fields.get("ExecStart", [])


def parse_unit(text: str) -> dict[str, list[str]]:
    """Key → values of a unit file: comments skipped, backslash continuations joined."""
    fields: dict[str, list[str]] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line[0] in "#;[":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if value:
            fields.setdefault(key, []).append(value)
        else:
            fields[key] = []
    return fields


def read_text(path: Path, limit: int = UNIT_READ_BYTES) -> str:
    """The first `limit` bytes of a regular file as text (never blocks on a FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as stream:
        return stream.read(limit).decode("utf-8", "replace")


def in_root(root: Path, link: Path, target: str) -> Path:
    """Where a symlink's target lies when the tree is read under `root` (absolute targets are
    taken relative to the root, as they would be on the endpoint itself)."""
    if os.path.isabs(target):
        return root / target.lstrip("/")
    return link.parent / target


def walk_files(directory: Path, on_error: Callable[[OSError], None] | None = None
               ) -> Iterator[Path]:
    """Every non-directory entry under `directory`, by name, symlinked dirs not entered.

    A directory that cannot be listed is skipped and passed to `on_error` (a missing one is
    not an error: most places do not exist on most endpoints)."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except FileNotFoundError:
        return
    except OSError as exc:
        if on_error is not None:
            on_error(exc)
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from walk_files(Path(entry.path), on_error)
        else:
            yield Path(entry.path)


def is_enablement_link(path: Path) -> bool:
    """A symlink in a `*.wants/` or `*.requires/` directory: how `systemctl enable` records."""
    return path.parent.name.endswith((".wants", ".requires", ".upholds"))


def template_of(name: str) -> str:
    """`getty@.service` for `getty@tty1.service`; other names unchanged."""
    stem, dot, suffix = name.rpartition(".")
    if "@" in stem and dot:
        return stem.split("@", 1)[0] + "@." + suffix
    return name


def enablement(directories: list[Path]) -> dict[str, list[str]]:
    """Unit name (and its template) → the targets that want it, from `*.wants/` symlinks."""
    wanted: dict[str, list[str]] = {}
    for directory in directories:
        for path in walk_files(directory):
            if path.is_symlink() and is_enablement_link(path):
                target_unit = path.parent.name.rsplit(".", 1)[0]
                for name in {path.name, template_of(path.name)}:
                    wanted.setdefault(name, []).append(target_unit)
    return wanted


def load_unit(path: Path, root: Path) -> UnitFile:
    """Read one unit file, following a symlink (within `root`) to the file it names."""
    unit = UnitFile(name=path.name, path=path)
    source = path
    if path.is_symlink():
        unit.link_target = os.readlink(path)
        source = in_root(root, path, unit.link_target)
    try:
        if source.is_file():
            unit.fields = parse_unit(read_text(source))
    except OSError as exc:
        unit.error = exc.strerror or str(exc)
    return unit


def unit_state(unit: UnitFile, wanted: dict[str, list[str]]) -> str:
    """As `systemctl is-enabled` would say: masked, alias, enabled, static or disabled."""
    if unit.link_target is not None and unit.link_target == "/dev/null":
        return "masked"
    if unit.name in wanted or template_of(unit.name) in wanted:
        return "enabled"
    if unit.link_target is not None and Path(unit.link_target).name != unit.name:
        return "alias"
    if not any(key in unit.fields for key in INSTALL_KEYS):
        return "static"
    return "disabled"


def system_unit_dirs(root: Path) -> list[Path]:
    """The system unit directories under `root`, each real directory once (merged /usr)."""
    seen: set[str] = set()
    out: list[Path] = []
    for rel in SYSTEM_UNIT_DIRS:
        path = root / rel
        real = os.path.realpath(path)
        if os.path.isdir(path) and real not in seen:
            seen.add(real)
            out.append(path)
    return out


def system_units(root: Path) -> Iterator[tuple[UnitFile, str]]:
    """Every system unit file of a code-starting type under `root`, with its state."""
    dirs = system_unit_dirs(root)
    wanted = enablement(dirs)
    for directory in dirs:
        for path in walk_files(directory):
            if path.name.endswith(UNIT_SUFFIXES) and not is_enablement_link(path):
                unit = load_unit(path, root)
                yield unit, unit_state(unit, wanted)
