"""The agent's once-only ledger: the command ids it claimed, kept on the endpoint's own disk.

Redis is writable by anyone inside the threat model, so the authority on "this command id
already started" cannot live there. One SQLite file per device, in WAL mode, holds a row per
claimed command id until its signed expiry (plus a margin for the endpoint's clock) has passed;
after that the envelope itself is refused as expired, so the row is no longer needed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from tasks.errors import LedgerError

#: Seconds a claim outlives its envelope's signed expiry: the endpoint's clock may step back
#: this far and a replay is still refused.
CLOCK_SKEW_MARGIN_S = 300.0
#: Seconds between two prunes of claims past their time, per agent process.
PRUNE_INTERVAL_S = 60.0
#: How long an agent process waits for another one's write to finish.
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    command_id TEXT PRIMARY KEY,
    keep_until REAL NOT NULL,
    claimed_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_by_keep_until ON claims (keep_until);
"""


class Ledger:
    """Insert-or-fail on command ids in one SQLite file; one connection per process, shared
    by its threads under a lock.

    The connection is opened lazily in the process that uses it: a prefork pool forks after
    the ledger is built, and an SQLite connection must never cross a fork. In the threads pool
    commands claim from several threads: the lock makes each use of the connection whole.
    """

    def __init__(self, path: Path, *, margin_s: float = CLOCK_SKEW_MARGIN_S,
                 prune_interval_s: float = PRUNE_INTERVAL_S) -> None:
        self.path = path
        self.margin_s = margin_s
        self.prune_interval_s = prune_interval_s
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._last_prune = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Create the ledger if needed and prove it can be opened; LedgerError if not.

        Called once when the agent starts, before its pool forks; the connection is closed again.
        """
        try:
            conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the agent's ledger {self.path}: {exc}",
                              hint="check LR_LEDGER_DIR: the agent must own and write it") from None
        conn.close()

    def claim(self, command_id: str, expires_at: float, now: float) -> bool:
        """Record that `command_id` starts now; False when it was claimed before (a replay)."""
        try:
            with self._lock:
                conn = self._connection()
                if now - self._last_prune >= self.prune_interval_s:
                    self._last_prune = now
                    conn.execute("DELETE FROM claims WHERE keep_until < ?", (now,))
                conn.execute(
                    "INSERT INTO claims (command_id, keep_until, claimed_at) VALUES (?, ?, ?)",
                    (command_id, expires_at + self.margin_s, now))
        except sqlite3.IntegrityError:
            return False
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"the agent's ledger {self.path} cannot be written: {exc}",
                              hint="free space on the endpoint, or check LR_LEDGER_DIR") from None
        return True

    def contains(self, command_id: str) -> bool:
        """True when `command_id` is claimed (and not yet pruned)."""
        try:
            with self._lock:
                row = self._connection().execute(
                    "SELECT 1 FROM claims WHERE command_id = ?", (command_id,)).fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"the agent's ledger {self.path} cannot be read: {exc}") from None
        return row is not None

    def prune(self, now: float) -> int:
        """Delete the claims kept past their time; how many went."""
        try:
            with self._lock:
                cur = self._connection().execute("DELETE FROM claims WHERE keep_until < ?",
                                                 (now,))
                self._last_prune = now
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"the agent's ledger {self.path} cannot be written: {exc}") from None
        return cur.rowcount

    def close(self) -> None:
        """Close this process's connection, if it opened one."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            # A connection inherited over fork is left alone (closing it could disturb the
            # parent's locks); this process opens its own.
            self._conn = self._open()
            self._pid = os.getpid()
            self._last_prune = 0.0
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it; its -wal and -shm files take the same mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        # Used from the threads that run commands, one at a time (the lock).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives the agent being killed; only a power loss or an
            # OS crash can lose the newest claims (see docs/security.md).
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error:
            conn.close()
            raise
        return conn
