"""The filters of `findfile` besides the name glob: --newer, --size, --sha256, --grep.

Cheap tests run first (the mtime and size the walk already has), the content tests (a streamed
sha256, a bounded read for the regular expression) only on what is left. `--size`, `--sha256`
and `--grep` consider regular files only; `--newer` any entry, as `find -newermt` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tasks import clock
from tasks.commands.filesystem import FindFileArgs, FoundFile
from tasks.errors import LiveResponseError
from tasks.sizes import in_range, parse_size_range
from tasks.times import parse_point_in_time
from worker_agent.hashing import hash_file, open_nonblocking

#: The most bytes of each file `--grep` reads: memory stays bounded whatever the tree holds.
GREP_MAX_BYTES = 8 * 1024 * 1024


@dataclass
class FileFilter:
    """What findfile's options ask of an entry, with a tally of what could not be checked."""

    newer: float | None = None
    size: tuple[int | None, int | None] | None = None
    sha256: str | None = None
    grep: re.Pattern[bytes] | None = None
    grep_max_bytes: int = GREP_MAX_BYTES
    #: Files whose content a filter needed but could not read (permission, vanished).
    unreadable: int = 0
    #: Files longer than `grep_max_bytes`: only their beginning was searched.
    partly_searched: int = 0

    @classmethod
    def from_args(cls, args: FindFileArgs) -> FileFilter:
        """The filter the arguments ask for (it accepts everything when they ask nothing)."""
        return cls(
            newer=(parse_point_in_time(args.newer, clock.now())
                   if args.newer is not None else None),
            size=parse_size_range(args.size) if args.size is not None else None,
            sha256=args.sha256,
            # MULTILINE: ^ and $ match at line ends, as grep's do.
            grep=re.compile(args.grep.encode(), re.MULTILINE) if args.grep else None,
        )

    @property
    def files_only(self) -> bool:
        return self.size is not None or self.sha256 is not None or self.grep is not None

    def accepts(self, found: FoundFile) -> bool:
        """Whether the entry passes every filter asked for."""
        if self.newer is not None and not found.mtime > self.newer:
            return False
        if not self.files_only:
            return True
        if found.type != "file":
            return False
        if self.size is not None and not in_range(found.size_bytes, self.size):
            return False
        path = Path(found.path)
        try:
            if self.sha256 is not None and self._sha256(path) != self.sha256:
                return False
            if self.grep is not None and not self._matches(path, self.grep):
                return False
        except (OSError, LiveResponseError):
            self.unreadable += 1
            return False
        return True

    def _sha256(self, path: Path) -> str:
        return hash_file(path, ("sha256",), follow_symlinks=False).hexdigests["sha256"]

    def _matches(self, path: Path, pattern: re.Pattern[bytes]) -> bool:
        fd = open_nonblocking(path, follow_symlinks=False)
        with open(fd, "rb", buffering=0, closefd=True) as stream:
            head = stream.read(self.grep_max_bytes + 1) or b""
        if len(head) > self.grep_max_bytes:
            self.partly_searched += 1
            head = head[: self.grep_max_bytes]
        return pattern.search(head) is not None
