"""The agent's quarantine vault: one private directory per item, its content and its record.

Layout: `<vault>/<QID>/content` (the file, link or tree as it was) and `<vault>/<QID>/meta.json`
(a VaultRecord). The vault and every item directory are mode 0700: nobody but the agent's own
account reads what was quarantined.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path

from pydantic import ValidationError

from tasks.commands.remediation import QID_PATTERN, QuarantinedEntry, RemediateResult
from tasks.errors import CommandFailedError, QuarantineNotFoundError
from worker_agent.filetree import fsync_dir

#: Mode of the vault and of each item directory.
VAULT_MODE = 0o700
#: Name of an item's content inside its directory.
CONTENT_NAME = "content"
#: Name of an item's record inside its directory.
RECORD_NAME = "meta.json"

_QID_RE = re.compile(QID_PATTERN)


class VaultRecord(RemediateResult):
    """What was quarantined, from where, by which command, and how to put it back: the
    command's result (`path` is the original path, its parent resolved, where undo puts the
    item back) plus what undo needs."""

    forced: bool
    quarantined_at: float
    command_id: str
    #: Parents before children; the first entry is the item itself.
    entries: list[QuarantinedEntry]


class Vault:
    """The quarantine directory of one agent."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        """Create the vault (and parents) if needed and make sure it is private."""
        os.makedirs(self.root, mode=VAULT_MODE, exist_ok=True)
        # makedirs leaves an existing directory's mode alone, and the umask may have cut it.
        os.chmod(self.root, VAULT_MODE)

    def new_item(self) -> tuple[str, Path]:
        """A new QID and its (empty, private) item directory."""
        self.ensure()
        while True:
            qid = "Q" + secrets.token_hex(6)
            item = self.root / qid
            try:
                os.mkdir(item, VAULT_MODE)
            except FileExistsError:
                continue
            os.chmod(item, VAULT_MODE)
            return qid, item

    def item(self, qid: str) -> Path:
        """The directory of item `qid` (it may not exist)."""
        if not _QID_RE.fullmatch(qid):
            raise QuarantineNotFoundError(f"{qid!r} is not a quarantine id",
                                          hint="a quarantine id is Q and 12 hex digits")
        return self.root / qid

    def content(self, qid: str) -> Path:
        """Where item `qid` keeps the quarantined file, link or tree."""
        return self.item(qid) / CONTENT_NAME

    def write_record(self, record: VaultRecord) -> None:
        """Store an item's record atomically (temp file, fsync, rename)."""
        item = self.item(record.qid)
        tmp = item / (RECORD_NAME + ".tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            out.write(record.model_dump_json(indent=1))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, item / RECORD_NAME)
        fsync_dir(item)

    def read_record(self, qid: str) -> VaultRecord:
        """The record of item `qid`; QuarantineNotFoundError if the vault has no such item."""
        path = self.item(qid) / RECORD_NAME
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise QuarantineNotFoundError(
                f"no quarantined item {qid} on this endpoint",
                hint="the id is in the result of the remediate that took it") from None
        try:
            record = VaultRecord.model_validate(json.loads(raw))
        except (ValueError, ValidationError):
            raise CommandFailedError(f"the record of {qid} in the vault is damaged",
                                     hint=f"inspect {path} on the endpoint") from None
        if record.qid != qid:
            raise CommandFailedError(f"the record of {qid} names another item ({record.qid})")
        return record

    def discard(self, qid: str) -> None:
        """Remove item `qid`, content and record (after a verified restore, or a failed take)."""
        shutil.rmtree(self.item(qid), ignore_errors=True)
