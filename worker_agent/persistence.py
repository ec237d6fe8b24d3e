"""Handler of `persistence`: every place on a Linux endpoint that makes something start.

Read under `settings.persistence_root` ("/" on a live endpoint; a mounted image or a test tree
otherwise); paths are reported as the endpoint sees them. Each item carries owner, mtime and
sha256, and a small detail (cron lines, ExecStart and enabled state, key types). Unreadable
entries are listed with an error, never fatal.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.commands.persistence import (
    DetailValue,
    PersistenceArgs,
    PersistenceItem,
    PersistenceKind,
    PersistenceResult,
)
from tasks.errors import PathNotFoundError, UnsupportedOnEndpointError
from worker_agent import systemd_units as su
from worker_agent.context import CommandContext
from worker_agent.filesystem import IdNames, entry_type
from worker_agent.hashing import hash_file
from worker_agent.home_dirs import PASSWD_MAX_BYTES, passwd_homes
from worker_agent.limits import json_size

#: Lines of a file's content kept in an item's detail, each cut to DETAIL_LINE_CHARS.
DETAIL_LINES = 20
DETAIL_LINE_CHARS = 300
#: Cron files in crontab format (the others hold scripts run by run-parts).
CRONTAB_FILES = ("etc/crontab", "etc/anacrontab")
CRON_TABLE_DIRS = ("etc/cron.d",)
CRON_SCRIPT_DIRS = ("etc/cron.hourly", "etc/cron.daily", "etc/cron.weekly", "etc/cron.monthly")
USER_CRONTAB_DIRS = ("var/spool/cron/crontabs", "var/spool/cron")
RC_LOCAL = ("etc/rc.local", "etc/rc.d/rc.local")
SYSTEM_SHELL_RC = ("etc/profile", "etc/bash.bashrc", "etc/zsh/zshrc", "etc/zshrc")
HOME_SHELL_RC = (".bashrc", ".profile", ".bash_profile", ".bash_login", ".zshrc")
HOME_KEYS = (".ssh/authorized_keys", ".ssh/authorized_keys2")

Detail = Callable[[str], dict[str, DetailValue]]


def run_persistence(args: PersistenceArgs, ctx: CommandContext) -> PersistenceResult:
    """Every persistence item under the configured root (or only `args.kind`)."""
    if sys.platform != "linux":
        raise UnsupportedOnEndpointError(f"persistence is not supported on {sys.platform} yet",
                                         hint="list services and scheduled tasks by hand")
    root = Path(ctx.settings.persistence_root)
    if not root.is_dir():
        raise PathNotFoundError(f"the persistence root {root} is not a directory",
                                hint="check LR_PERSISTENCE_ROOT on the agent")
    sweep = Sweep(root, ctx.output_max_bytes)
    for kind, found in sources(root, home_dirs(root), sweep):
        if args.kind not in (None, kind):
            continue
        for path, detail in found:
            if not sweep.add(kind, path, detail):
                break
        if sweep.full:
            break
    return PersistenceResult(root=str(root), items=sweep.items, unreadable=sweep.unreadable)


Found = Iterator[tuple[Path, Detail | None]]


def sources(root: Path, homes: list[Path],
            sweep: Sweep) -> Iterator[tuple[PersistenceKind, Found]]:
    """Each kind of item with a generator of (path, detail parser) under `root`."""
    yield "cron", _cron(root, sweep)
    yield "user-crontab", _user_crontabs(root, sweep)
    yield "systemd", _systemd(root, sweep)
    yield "systemd-dropin", _dropins(root, su.system_unit_dirs(root), sweep)
    yield "systemd-user", _user_units(root, homes, sweep)
    yield "rc.local", ((root / rel, None) for rel in RC_LOCAL if os.path.lexists(root / rel))
    yield "init.d", ((p, None) for p in sweep.children(root / "etc/init.d"))
    yield "profile.d", ((p, None) for p in sweep.children(root / "etc/profile.d"))
    yield "shell-rc", ((p, None) for p in _existing([root / r for r in SYSTEM_SHELL_RC]
                                                    + [h / r for h in homes
                                                       for r in HOME_SHELL_RC]))
    yield "authorized_keys", ((p, key_detail) for p in _existing(
        [h / r for h in homes for r in HOME_KEYS]))
    yield "ld.so.preload", ((p, lines_detail) for p in _existing([root / "etc/ld.so.preload"]))


def home_dirs(root: Path) -> list[Path]:
    """Home directories under `root`: from its etc/passwd, else home/* and root."""
    homes: list[Path] = []
    try:
        text = su.read_text(root / "etc/passwd", PASSWD_MAX_BYTES)
    except OSError:
        homes = [*_children(root / "home", None), root / "root"]
    else:
        homes = [home for _, home in passwd_homes(text, root)]
    unique: dict[str, Path] = {}
    for home in homes:
        if home.is_dir():
            unique.setdefault(os.path.realpath(home), home)
    return list(unique.values())


def _cron(root: Path, sweep: Sweep) -> Found:
    for path in _existing([root / rel for rel in CRONTAB_FILES]):
        yield path, lines_detail
    for rel in CRON_TABLE_DIRS:
        for path in sweep.children(root / rel):
            yield path, lines_detail
    for rel in CRON_SCRIPT_DIRS:
        for path in sweep.children(root / rel):
            yield path, None


def _user_crontabs(root: Path, sweep: Sweep) -> Found:
    for rel in USER_CRONTAB_DIRS:
        for path in sweep.children(root / rel):
            if not path.is_dir():
                yield path, lines_detail


def _systemd(root: Path, sweep: Sweep) -> Found:
    wanted = su.enablement(su.system_unit_dirs(root))
    for directory in su.system_unit_dirs(root):
        yield from _units_in(root, directory, wanted, sweep)


def _user_units(root: Path, homes: list[Path], sweep: Sweep) -> Found:
    for directory in [root / su.GLOBAL_USER_UNIT_DIR] + [h / su.HOME_USER_UNIT_DIR
                                                         for h in homes]:
        if directory.is_dir():
            yield from _units_in(root, directory, su.enablement([directory]), sweep)
            yield from _dropins(root, [directory], sweep)


def _units_in(root: Path, directory: Path, wanted: dict[str, list[str]],
              sweep: Sweep) -> Found:
    for path in su.walk_files(directory, sweep.could_not_list):
        if path.name.endswith(su.UNIT_SUFFIXES) and not su.is_enablement_link(path):
            unit = su.load_unit(path, root)
            yield path, _unit_detail(unit, su.unit_state(unit, wanted), wanted)


def _dropins(root: Path, directories: list[Path], sweep: Sweep) -> Found:
    for directory in directories:
        for path in su.walk_files(directory, sweep.could_not_list):
            if path.parent.name.endswith(".d") and path.name.endswith(".conf"):
                yield path, _unit_detail(su.load_unit(path, root), None, {})


def _unit_detail(unit: su.UnitFile, state: str | None,
                 wanted: dict[str, list[str]]) -> Detail:
    def detail(_text: str) -> dict[str, DetailValue]:
        out: dict[str, DetailValue] = {}
        if state is not None:
            out["state"] = state
            out["enabled"] = state == "enabled"
            by = wanted.get(unit.name) or wanted.get(su.template_of(unit.name)) or []
            if by:
                out["wanted_by"] = sorted(set(by))
        for key, name in (("ExecStart", "exec_start"), ("ExecStartPre", "exec_start_pre"),
                          ("OnCalendar", "on_calendar"), ("OnBootSec", "on_boot"),
                          ("Unit", "unit"), ("ListenStream", "listen")):
            if unit.fields.get(key):
                out[name] = [_cut(v) for v in unit.fields[key][:DETAIL_LINES]]
        return out
    return detail


def lines_detail(text: str) -> dict[str, DetailValue]:
    """The lines that do something (not blank, not comments), the first few of them."""
    lines = [_cut(line.strip()) for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return {"lines": lines[:DETAIL_LINES]} if lines else {}


def key_detail(text: str) -> dict[str, DetailValue]:
    """Each authorized key as `type comment`, and which keys carry options (command=...)."""
    keys: list[str] = []
    with_options: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        at = next((i for i, w in enumerate(words) if w.startswith(("ssh-", "ecdsa-", "sk-"))),
                  None)
        summary = " ".join(words[at:at + 1] + words[at + 2:]) if at is not None else "?"
        keys.append(_cut(summary))
        if at:
            with_options.append(_cut(" ".join(words[:at])))
    out: dict[str, DetailValue] = {"keys": keys[:DETAIL_LINES]}
    if with_options:
        out["options"] = with_options[:DETAIL_LINES]
    return out


class Sweep:
    """The items found so far, stopping once their JSON passes the output limit."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.items: list[PersistenceItem] = []
        self.unreadable = 0
        self.size = 0
        self.full = False
        self.names = IdNames()

    def could_not_list(self, _exc: OSError) -> None:
        """Count a place that exists but could not be listed."""
        self.unreadable += 1

    def children(self, directory: Path) -> list[Path]:
        """The entries of `directory` by name; none when it does not exist."""
        return _children(directory, self.could_not_list)

    def add(self, kind: PersistenceKind, path: Path, detail: Detail | None) -> bool:
        """Describe and keep one item; False once the result is over the limit."""
        item = describe(self.root, path, kind, detail, self.names)
        if item is None:
            return True
        self.items.append(item)
        # Past the limit by one item: the executor cuts the list and marks the result truncated.
        self.size += json_size(item.model_dump(mode="json"))
        self.full = self.size > self.max_bytes
        return not self.full


def describe(root: Path, path: Path, kind: PersistenceKind, detail: Detail | None,
             names: IdNames) -> PersistenceItem | None:
    """One item: stat (not followed), sha256 and detail of the file (a link's target, in the
    root); None when the path vanished."""
    shown = "/" + path.relative_to(root).as_posix()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return PersistenceItem(kind=kind, path=shown, type="other", error=_why(exc))
    kind_of = entry_type(st.st_mode)
    item = PersistenceItem(
        kind=kind, path=shown, type=kind_of if kind_of in ("file", "dir", "symlink") else "other",
        owner=names.user(st.st_uid), uid=st.st_uid, mode=stat.filemode(st.st_mode),
        size_bytes=st.st_size, mtime=st.st_mtime)
    content = path
    if kind_of == "symlink":
        item.link_target = os.readlink(path)
        content = su.in_root(root, path, item.link_target)
    try:
        if not stat.S_ISREG(os.lstat(content).st_mode):
            return item
        item.sha256 = hash_file(content, ("sha256",), follow_symlinks=False).hexdigests["sha256"]
        if detail is not None:
            item.detail = detail(su.read_text(content))
    except FileNotFoundError:
        if content is not path:
            item.error = "the link's target does not exist"
    except OSError as exc:
        item.error = _why(exc)
    return item


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _cut(text: str) -> str:
    return text if len(text) <= DETAIL_LINE_CHARS else text[:DETAIL_LINE_CHARS] + "…"


def _children(directory: Path, on_error: Callable[[OSError], None] | None) -> list[Path]:
    try:
        with os.scandir(directory) as listing:
            return sorted(Path(e.path) for e in listing)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if on_error is not None:
            on_error(exc)
        return []


def _existing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if os.path.lexists(p)]
