"""Real login record files for tests: `struct utmp` records and lastlog slots written byte by
byte at the offsets of glibc's Linux layout (utmp.h, lastlog.h), independently of the agent's
decoder, so that `last`, `utmpdump`, `who` and `lastlog` can read the same files."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

#: sizeof(struct utmp) and sizeof(struct lastlog) on Linux.
UTMP_BYTES = 384
LASTLOG_BYTES = 292
USER_PROCESS, DEAD_PROCESS, BOOT_TIME = 7, 8, 2


@dataclass(frozen=True)
class Login:
    type: int
    pid: int
    line: str
    user: str
    host: str
    time: int
    usec: int = 0
    address: str | None = None
    session: int = 0


def utmp_record(login: Login) -> bytes:
    """One record: ut_type@0, ut_pid@4, ut_line@8, ut_id@40, ut_user@44, ut_host@76,
    ut_exit@332, ut_session@336, ut_tv@340, ut_addr_v6@348, unused@364."""
    out = bytearray(UTMP_BYTES)
    out[0:2] = login.type.to_bytes(2, "little", signed=True)
    out[4:8] = login.pid.to_bytes(4, "little", signed=True)
    _put(out, 8, 32, login.line)
    _put(out, 40, 4, login.line[-4:] if login.line.startswith("pts/") else "~~")
    _put(out, 44, 32, login.user)
    _put(out, 76, 256, login.host)
    out[336:340] = login.session.to_bytes(4, "little", signed=True)
    out[340:344] = login.time.to_bytes(4, "little", signed=True)
    out[344:348] = login.usec.to_bytes(4, "little", signed=True)
    if login.address:
        packed = ipaddress.ip_address(login.address).packed
        out[348:348 + len(packed)] = packed
    return bytes(out)


def write_utmp(path: Path, logins: list[Login]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(utmp_record(x) for x in logins))
    return path


def write_lastlog(path: Path, slots: dict[int, tuple[int, str, str]]) -> Path:
    """A sparse lastlog: uid → (time, line, host) at offset uid * 292."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        for uid, (when, line, host) in sorted(slots.items()):
            slot = bytearray(LASTLOG_BYTES)
            slot[0:4] = when.to_bytes(4, "little", signed=True)
            _put(slot, 4, 32, line)
            _put(slot, 36, 256, host)
            stream.seek(uid * LASTLOG_BYTES)
            stream.write(slot)
    return path


def _put(buf: bytearray, at: int, size: int, text: str) -> None:
    raw = text.encode()[:size]
    buf[at:at + len(raw)] = raw
