"""Decoders of the login record files: utmp, wtmp and btmp (`struct utmp`) and lastlog.

Layouts are glibc's on Linux, the same on 32- and 64-bit (times are 32-bit there by design):
`struct utmp` is 384 bytes, `struct lastlog` 292, one lastlog slot per uid.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from tasks.commands.logs import LastlogEntry, LoginRecord

#: struct utmp: ut_type (short, 2 pad), ut_pid, ut_line[32], ut_id[4], ut_user[32],
#: ut_host[256], ut_exit (2 shorts), ut_session, ut_tv (2 int32), ut_addr_v6[16], unused[20].
UTMP = struct.Struct("<h2xi32s4s32s256shhi2i16s20x")
#: struct lastlog: ll_time (int32), ll_line[32], ll_host[256].
LASTLOG = struct.Struct("<i32s256s")
#: ut_type values by name (utmp.h).
UT_TYPES = {0: "EMPTY", 1: "RUN_LVL", 2: "BOOT_TIME", 3: "NEW_TIME", 4: "OLD_TIME",
            5: "INIT_PROCESS", 6: "LOGIN_PROCESS", 7: "USER_PROCESS", 8: "DEAD_PROCESS",
            9: "ACCOUNTING"}
#: Bytes read per chunk of a login file.
READ_BYTES = UTMP.size * 1024


def text(field: bytes) -> str:
    """A fixed-size C string field as text (to its first NUL; bytes not UTF-8 escaped)."""
    return field.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def address(raw: bytes) -> str | None:
    """ut_addr_v6 as text: IPv4 in the first word when the others are zero; None when unset."""
    if not any(raw):
        return None
    if not any(raw[4:]):
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def decode_utmp(record: bytes) -> LoginRecord:
    """One 384-byte `struct utmp` record."""
    (kind, pid, line, ut_id, user, host, term, status, session, sec, usec,
     addr) = UTMP.unpack(record)
    return LoginRecord(type=UT_TYPES.get(kind, f"TYPE_{kind}"), pid=pid, line=text(line),
                       id=text(ut_id), user=text(user), host=text(host),
                       exit_termination=term, exit_status=status, session=session,
                       time=sec + usec / 1_000_000, address=address(addr))


def read_utmp(path: Path) -> tuple[list[LoginRecord], int]:
    """Every record of a utmp-format file in file order, and the bytes left over at its end."""
    records, leftover = [], 0
    for record in iter_records(path, UTMP.size):
        if len(record) < UTMP.size:
            leftover = len(record)
            break
        records.append(decode_utmp(record))
    return records, leftover


def iter_records(path: Path, size: int) -> Iterator[bytes]:
    """Fixed-size records of `path`; a short last one is yielded as it is."""
    with path.open("rb") as stream:
        while True:
            block = stream.read(READ_BYTES if READ_BYTES % size == 0 else size)
            if not block:
                return
            for at in range(0, len(block), size):
                yield block[at:at + size]


def read_lastlog(path: Path, names: dict[int, str]) -> list[LastlogEntry]:
    """Each uid's slot of a lastlog file that holds a login.

    The file is sparse (its size is the highest uid's slot: a uid of 4294967294 makes it a
    terabyte), so only its data regions are read; a hole is empty slots.
    """
    entries = []
    size = LASTLOG.size
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    next_slot = 0
    try:
        for start, end in _data_regions(fd):
            first = max(start // size, next_slot)
            os.lseek(fd, first * size, os.SEEK_SET)
            for slot in range(first, -(-end // size)):
                record = os.read(fd, size)
                if len(record) < size:
                    break
                next_slot = slot + 1
                when, line, host = LASTLOG.unpack(record)
                if when != 0:
                    entries.append(LastlogEntry(uid=slot, user=names.get(slot),
                                                time=float(when), line=text(line),
                                                host=text(host)))
    finally:
        os.close(fd)
    return entries


def _data_regions(fd: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each region of `fd` that holds data; the whole file where the
    filesystem cannot tell holes apart."""
    end_of_file = os.fstat(fd).st_size
    at = 0
    while at < end_of_file:
        try:
            start = os.lseek(fd, at, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield at, end_of_file
                return
            raise
        yield start, end
        # The next region starts after this one, rounded to a whole slot.
        at = max(end, start + 1)
