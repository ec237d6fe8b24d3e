"""Handlers of `env` (a process's environment, secrets redacted) and `history` (shell
histories under each account's home)."""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import re
import stat
from pathlib import Path

from tasks.commands.user_traces import (
    REDACTED,
    EnvArgs,
    EnvResult,
    EnvVariable,
    HistoryArgs,
    HistoryFile,
    HistoryResult,
)
from tasks.errors import (
    CommandFailedError,
    EndpointPermissionError,
    PathNotFoundError,
    ProcessNotFoundError,
)
from worker_agent.context import CommandContext
from worker_agent.filesystem import IdNames
from worker_agent.hashing import open_nonblocking
from worker_agent.home_dirs import PASSWD_MAX_BYTES, passwd_homes
from worker_agent.system_state import require_linux
from worker_agent.systemd_units import read_text

#: Names of variables whose values are never shown: any that holds one of these words
#: (`MYSQL_PWD` is a password, `PWD` and `OLDPWD` are directories).
SECRET_NAME = re.compile(
    r"TOKEN|PASSW|PASSPHRASE|SECRET|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|SIGNATURE"
    r"|(^|_)PASS($|_)|(^|_)PW($|_)|_PWD($|_)", re.IGNORECASE)
#: A password inside a URL (`redis://user:pw@host`): the password is masked, the rest shown.
URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]*:)[^@\s/]+(?=@)")

#: History files under a home directory, by shell.
HISTORY_FILES: tuple[tuple[str, str], ...] = (
    ("bash", ".bash_history"),
    ("zsh", ".zsh_history"),
    ("zsh", ".zhistory"),
    ("zsh", ".histfile"),
    ("sh", ".sh_history"),
    ("sh", ".ash_history"),
    ("sh", ".history"),
    ("fish", ".local/share/fish/fish_history"),
    ("fish", ".config/fish/fish_history"),
)
#: Longest line kept of a history (longer ones are cut with an ellipsis).
LINE_MAX_BYTES = 4096
#: Bytes read at once while hashing and counting.
READ_BYTES = 1024 * 1024


def run_env(args: EnvArgs, ctx: CommandContext) -> EnvResult:
    """The environment a process started with, values of secret-looking names redacted."""
    require_linux("env")
    proc = Path(f"/proc/{args.pid}")
    try:
        raw = (proc / "environ").read_bytes()
        name = (proc / "comm").read_text(errors="replace").strip()
    except FileNotFoundError:
        raise ProcessNotFoundError(f"no process with pid {args.pid}",
                                   hint="list them with 'processes'") from None
    except PermissionError:
        raise EndpointPermissionError(
            f"permission denied reading the environment of pid {args.pid}",
            hint="the agent's OS account may not read other users' processes") from None
    return EnvResult(pid=args.pid, name=name, variables=parse_environ(raw))


def parse_environ(raw: bytes) -> list[EnvVariable]:
    """NUL-separated `NAME=VALUE` entries, each value redacted when it may be a secret."""
    variables = []
    for entry in raw.split(b"\0"):
        if not entry:
            continue
        name, _, value = entry.decode(errors="replace").partition("=")
        variables.append(redact(name, value))
    return variables


def redact(name: str, value: str) -> EnvVariable:
    """The variable as shown: a secret-looking name hides its value, a URL its password."""
    if SECRET_NAME.search(name):
        return EnvVariable(name=name, value=REDACTED, redacted=True)
    masked, count = URL_PASSWORD.subn(lambda m: m.group("head") + REDACTED, value)
    return EnvVariable(name=name, value=masked, redacted=count > 0)


def run_history(args: HistoryArgs, ctx: CommandContext) -> HistoryResult:
    """Every shell history under the homes of the accounts in the root's etc/passwd."""
    require_linux("history")
    root = Path(ctx.settings.persistence_root)
    accounts = read_accounts(root)
    if args.user is not None:
        accounts = [(u, h) for u, h in accounts if u == args.user]
        if not accounts:
            raise CommandFailedError(
                f"no account {args.user!r} in {root / 'etc/passwd'}",
                hint="run history without --user to see every account's")
    names = IdNames()
    files: list[HistoryFile] = []
    unreadable = 0
    seen: set[str] = set()
    for user, home in accounts:
        real = os.path.realpath(home)
        if real in seen:
            continue
        seen.add(real)
        if not os.access(home, os.X_OK) and os.path.isdir(home):
            unreadable += 1
            continue
        for shell, rel in HISTORY_FILES:
            path = home / rel
            if os.path.lexists(path):
                files.append(describe_history(root, path, user, shell, args.max, names))
    return HistoryResult(root=str(root), files=files, unreadable=unreadable)


def read_accounts(root: Path) -> list[tuple[str, Path]]:
    """(name, home under `root`) of each account in the root's etc/passwd with a home."""
    passwd = root / "etc/passwd"
    try:
        text = read_text(passwd, PASSWD_MAX_BYTES)
    except FileNotFoundError:
        raise PathNotFoundError(f"{passwd} does not exist",
                                hint="check LR_PERSISTENCE_ROOT on the agent") from None
    except PermissionError:
        raise EndpointPermissionError(f"permission denied: {passwd}") from None
    return passwd_homes(text, root)


def describe_history(root: Path, path: Path, user: str, shell: str, max_lines: int,
                     names: IdNames) -> HistoryFile:
    """One history: stat (not followed), sha256, line count and last lines of its content."""
    shown = "/" + path.relative_to(root).as_posix()
    st = os.lstat(path)
    item = HistoryFile(user=user, shell=shell, path=shown, owner=names.user(st.st_uid),
                       size_bytes=st.st_size, mtime=st.st_mtime)
    if stat.S_ISLNK(st.st_mode):
        item.link_target = os.readlink(path)
        return item
    if not stat.S_ISREG(st.st_mode):
        item.error = "not a regular file"
        return item
    try:
        item.sha256, item.total_lines, item.lines = read_tail(path, max_lines)
    except OSError as exc:
        item.error = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) \
            else (exc.strerror or str(exc))
    return item


def read_tail(path: Path, max_lines: int) -> tuple[str, int, list[str]]:
    """(sha256, number of lines, last `max_lines` lines) of a file, in one streamed read.

    A last line without its newline counts, as `tail` shows it; memory stays at most
    `max_lines` lines of LINE_MAX_BYTES whatever the file's size.
    """
    hasher = hashlib.sha256()
    last: collections.deque[bytes] = collections.deque(maxlen=max_lines or None)
    count = 0
    partial = bytearray()
    cut = False
    fd = open_nonblocking(path, follow_symlinks=False)
    with open(fd, "rb", buffering=0, closefd=True) as stream:
        while chunk := stream.read(READ_BYTES):
            hasher.update(chunk)
            pieces = chunk.split(b"\n")
            for piece in pieces[:-1]:
                line, cut = _keep(partial, piece, cut)
                count += 1
                if max_lines:
                    last.append(bytes(line) + (b"\xe2\x80\xa6" if cut else b""))
                partial.clear()
                cut = False
            partial, cut = _keep(partial, pieces[-1], cut)
    if partial:
        count += 1
        if max_lines:
            last.append(bytes(partial) + (b"\xe2\x80\xa6" if cut else b""))
    return hasher.hexdigest(), count, [line.decode(errors="replace") for line in last]


def _keep(partial: bytearray, piece: bytes, cut: bool) -> tuple[bytearray, bool]:
    """`partial` + `piece`, at most LINE_MAX_BYTES of it; whether anything was cut."""
    room = LINE_MAX_BYTES - len(partial)
    if len(piece) > room:
        return partial + piece[:max(room, 0)], True
    return partial + piece, cut
