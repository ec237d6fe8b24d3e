"""The worker's record of the step commands it ever sent, on the orchestrator's own disk.

The agent's ledger forgets a command id once its signed expiry has passed, and the command's
record lives in Redis, which an attacker may edit. Without this file, deleting a step's record
after its envelope expired and pushing the run's (validly signed) order again would make the
worker send that step once more under a fresh expiry. So a step's command id is claimed here
before it is first submitted, and a claimed id is never submitted again.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from config.settings import Settings
from tasks import clock
from tasks.errors import ConfigurationError

#: File name (no device id can contain '@', so it never meets an agent's ledger).
FILE_NAME = "playbook-steps@orchestrator.sqlite3"


def sent_path(settings: Settings) -> Path:
    """Where the orchestrator workers of this host keep the claims (they share the file)."""
    return (settings.ledger_dir or settings.data_dir / "ledger") / FILE_NAME


class SentSteps:
    """Claims of step command ids, durable across worker restarts (SQLite, one host)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                         timeout=10)
            self._conn.execute("CREATE TABLE IF NOT EXISTS sent (command_id TEXT PRIMARY KEY,"
                               " run_id TEXT NOT NULL, sent_at REAL NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot open the worker's step record {path}: {exc}",
                                     hint="check LR_LEDGER_DIR (or LR_DATA_DIR)") from None

    def claim(self, command_id: str, run_id: str) -> bool:
        """True the first time `command_id` is claimed; False ever after."""
        with self._lock:
            try:
                self._conn.execute("INSERT INTO sent VALUES (?, ?, ?)",
                                   (command_id, run_id, clock.now()))
            except sqlite3.IntegrityError:
                return False
        return True

    def close(self) -> None:
        self._conn.close()
