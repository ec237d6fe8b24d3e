"""`lr` on a real pseudo-terminal, as an analyst types at it: keys in, screen text out.

The child is a session leader with the terminal as its controlling tty, so Ctrl-C and Ctrl-Z
reach it as SIGINT and SIGTSTP from the line discipline, exactly as from a keyboard.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path

#: Keys as the terminal sends them.
CTRL_C = "\x03"
CTRL_Z = "\x1a"
TAB = "\t"
#: Escape sequences a terminal program may write (cursor moves, modes): not text.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\x07|\r")


class Terminal:
    """One program on a pty; `expect` waits for text, `send` types."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: nothing but exec (the parent has threads)
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.screen = ""
        self._seen = 0

    @classmethod
    def lr(cls, args: list[str], lr_home: Path) -> Terminal:
        """`lr ARGS` with the user's LR_* settings left out and a data directory of its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LR_")}
        env.update(LR_DATA_DIR=str(lr_home), TERM="dumb", PYTHONUNBUFFERED="1")
        root = Path(__file__).resolve().parents[2]
        return cls([sys.executable, "-m", "orchestrator.cli.main", *args], env, root)

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def expect(self, pattern: str, timeout_s: float = 20.0) -> re.Match[str]:
        """Wait for `pattern` (a regex) in the text written since the last match."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.compile(pattern).search(self.text, self._seen)
            if found:
                self._seen = found.end()
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{pattern!r} not seen; the screen so far:\n{self.text}")

    @property
    def text(self) -> str:
        return ESCAPES.sub("", self.screen)

    def _read(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], min(timeout_s, 0.5))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the child ended and the pty closed
            return False
        self.screen += data.decode(errors="replace")
        return bool(data)

    def wait(self, timeout_s: float = 20.0) -> int:
        """The child's exit code, once it ended (reading what it still writes meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            self._read(0.1)
        raise AssertionError(f"lr did not end; the screen so far:\n{self.text}")

    def close(self) -> None:
        """End the child if it still runs, and release the terminal."""
        try:
            if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.fd)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
