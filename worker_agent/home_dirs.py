"""The accounts of an endpoint's etc/passwd that have a home: persistence and history look
under each."""

from __future__ import annotations

from pathlib import Path

#: Most of etc/passwd read: a hostile file cannot make the agent hold more.
PASSWD_MAX_BYTES = 4 * 1024 * 1024


def passwd_homes(text: str, root: Path) -> list[tuple[str, Path]]:
    """(account, home under `root`) of each passwd line whose home is a directory path other
    than `/` (service accounts living at `/` have no home of their own)."""
    homes = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[5].startswith("/") and parts[5] != "/":
            homes.append((parts[0], root / parts[5].lstrip("/")))
    return homes
