"""The receiving end of `getfile` (and of every command that sends a file: `collect`,
`memdump`): a command's transfer stream into the evidence store.

The dispatcher runs the receiver while the agent sends (`receive_file`, from `Dispatcher.wait`;
background jobs wait in a thread, so `getfile &` is received the same way). Chunks go to a temp
file in the store, hashed on arrival; consumed entries are deleted so the agent may send more.
On the agent's end marker the two sha256 must agree: then the object is linked into the store
and the acquisition is recorded and audited (`evidence.stored`). Anything else (a mismatch, the
agent's error marker, a stall, a cancel, a malformed stream) deletes the temp file and is audited
(`evidence.failed`). The stream is deleted in every case. File content never enters the audit.
A *streamed* transfer (an archive or dump made while sent) announces at most how many bytes
follow; its end marker gives the real size, which must equal what arrived.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import redis

from config import Settings
from orchestrator.audit.log import AuditLog
from orchestrator.commands.records import CommandRecord
from orchestrator.files.evidence import EvidenceRecord, EvidenceStore
from tasks import clock
from tasks.commands.acquisition import GetFileArgs
from tasks.envelope import CommandOutcome, CommandStatus, ErrorInfo
from tasks.errors import (
    EvidenceDiskFullError,
    FileTooLargeError,
    HashMismatchError,
    TransferError,
    TransferStalledError,
)
from tasks.keys import Keys
from tasks.registry import REGISTRY
from tasks.state import CommandStateStore
from tasks.transfer import KIND_BEGIN, KIND_CHUNK, KIND_ERROR, TransferEntry, parse_entry

if TYPE_CHECKING:
    from orchestrator.plane import ControlPlane

log = logging.getLogger(__name__)

#: Longest single wait for new entries before the command's state is looked at again.
READ_BLOCK_MS = 250
#: Entries read at once; each holds at most one chunk, so memory stays bounded.
READ_COUNT = 4
#: How often the command's state is checked while entries keep arriving (a cancel stops us).
STATE_CHECK_S = 1.0
#: Seconds past a queued command's expiry before the receiver leaves its expiry to `wait`.
QUEUED_GRACE_S = 2.0
#: The errors that say the evidence store's disk is full (or the orchestrator's quota spent).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class Receipt:
    """What the orchestrator made of one transfer: the evidence stored, or why nothing was."""

    stored: EvidenceRecord | None = None
    object_path: str | None = None
    error: ErrorInfo | None = None


class _Failed(Exception):
    """The transfer ends without evidence, for the reason `error` gives."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


def prepare_getfile(plane: ControlPlane, args: GetFileArgs) -> GetFileArgs:
    """Bind the orchestrator's size limit into the signed arguments: the agent refuses up front."""
    return args.model_copy(update={"max_bytes": plane.settings.getfile_max_bytes})


def receive_file(plane: ControlPlane, record: CommandRecord) -> Receipt | None:
    """Receive the file `record`'s command sends, if it sends one.

    None when the command sends no file or never began sending (refused up front, expired,
    cancelled before it started): its outcome then says why.
    """
    spec = REGISTRY.get(record.command)
    if spec is None or not spec.sends_file:
        return None
    store = EvidenceStore(plane.settings.evidence_path(), plane.client, plane.keys)
    receiver = TransferReceiver(plane.client, plane.keys, plane.states, plane.audit, store,
                                plane.settings)
    return receiver.receive(record)


def merge_receipt(outcome: CommandOutcome, receipt: Receipt | None) -> CommandOutcome:
    """The command's outcome with the transfer's verdict: evidence added to a completed result,
    or the command failed when the agent finished but the orchestrator kept nothing.

    A failed transfer's reason is the command's: when the receiver gave up (its disk full, a
    hash mismatch), the agent only saw the stream abandoned, which says nothing of why.
    """
    if receipt is None or outcome.status not in (CommandStatus.COMPLETED,
                                                 CommandStatus.FAILED):
        return outcome
    if outcome.status is CommandStatus.FAILED:
        if receipt.error is None:
            return outcome
        return outcome.model_copy(update={"error": receipt.error})
    if receipt.error is not None or receipt.stored is None:
        error = receipt.error or ErrorInfo(code=TransferError.code,
                                           message="the file did not arrive")
        return outcome.model_copy(update={"status": CommandStatus.FAILED, "error": error})
    result = dict(outcome.result or {})
    result.update(evidence_sha256=receipt.stored.sha256, evidence_path=receipt.object_path,
                  stored_at=receipt.stored.stored_at)
    return outcome.model_copy(update={"result": result})


@dataclass
class _Incoming:
    """One transfer as it arrives: what `begin` announced, what came, the temp file."""

    begin: TransferEntry | None = None
    received: int = 0
    chunks: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    out: BinaryIO | None = None
    temp: Path | None = None
    sha256_agent: str | None = None
    sha256_arrival: str | None = None

    def progress(self) -> str:
        size = self.begin.size_bytes if self.begin and not self.begin.streamed else None
        return json.dumps({"bytes": self.received, "size": size})

    def discard(self) -> None:
        """Close and delete the temp file, if one is left."""
        if self.out is not None:
            self.out.close()
            self.out = None
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


class TransferReceiver:
    """Receives transfer streams into an evidence store, one `receive` call per command."""

    def __init__(self, client: redis.Redis, keys: Keys, states: CommandStateStore,
                 audit: AuditLog, store: EvidenceStore, settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.states = states
        self.audit = audit
        self.store = store
        self.settings = settings

    def receive(self, record: CommandRecord) -> Receipt | None:
        """Consume the command's stream until the transfer ends; see `receive_file`."""
        started_at = clock.now()
        incoming = _Incoming()
        try:
            return self._consume(record, incoming, started_at)
        except _Failed as failed:
            error = failed.error
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                error = self._disk_full(incoming)
            else:
                error = ErrorInfo(code=TransferError.code,
                                  message=f"the evidence store could not write the file: {exc}",
                                  hint="check the orchestrator's evidence directory and its disk")
        except Exception:  # a bug here must still end the command, never leave it running
            log.exception("receiving the file of %s failed", record.command_id)
            error = ErrorInfo(code=TransferError.code,
                              message="the orchestrator failed while receiving the file; "
                                      "nothing was kept", hint="see the orchestrator's log")
        finally:
            incoming.discard()
            try:
                self.client.delete(self.keys.xfer(record.command_id))
            except redis.RedisError as exc:  # it expires on its own (the agent sets a TTL)
                log.warning("could not delete transfer stream of %s: %s", record.command_id, exc)
        self._audit_failed(record, incoming, error)
        return Receipt(error=error)

    def _disk_full(self, incoming: _Incoming) -> ErrorInfo:
        """Why a transfer failed with ENOSPC: the orchestrator's disk, not the endpoint's."""
        begin = incoming.begin
        if begin is None:
            written = "no byte had arrived"
        elif begin.streamed:  # its size is known only at the end
            written = f"{incoming.received} bytes had arrived"
        else:
            written = f"{incoming.received} of {begin.size_bytes} bytes had arrived"
        return ErrorInfo(
            code=EvidenceDiskFullError.code,
            message=f"the orchestrator's evidence disk is full ({self.store.root}): {written}; "
                    "nothing was kept",
            hint="free space on that disk, or set LR_EVIDENCE_DIR to a larger one; then run "
                 "getfile again")

    def _consume(self, record: CommandRecord, incoming: _Incoming,
                 started_at: float) -> Receipt | None:
        key = self.keys.xfer(record.command_id)
        stall_s = self.settings.transfer_stall_timeout_s
        last_id: bytes | str = "0-0"
        final_seen = False
        last_entry_at = time.monotonic()
        running_since: float | None = None
        next_check = 0.0
        while True:
            reply: Any = self.client.xread({key: last_id}, count=READ_COUNT,
                                           block=None if final_seen else READ_BLOCK_MS)
            entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1] if reply else []
            if entries:
                done = None
                ids = []
                for entry_id, raw in entries:
                    last_id = entry_id
                    ids.append(entry_id)
                    done = self._take(record, incoming, raw, started_at)
                    if done is not None:
                        break
                pipe = self.client.pipeline(transaction=False)
                pipe.xdel(key, *ids)
                pipe.hset(self.keys.command(record.command_id), "progress", incoming.progress())
                pipe.execute()
                if done is not None:
                    return done
                last_entry_at = time.monotonic()
                if time.monotonic() < next_check:
                    continue
            elif final_seen:
                if incoming.begin is None:
                    return None
                raise _Failed(ErrorInfo(
                    code=TransferError.code,
                    message=f"the command ended after {incoming.received} bytes, before the "
                            "whole file arrived; nothing was kept"))
            next_check = time.monotonic() + STATE_CHECK_S
            state = self.states.state(record.command_id)
            if state is CommandStatus.CANCELLED:
                if incoming.begin is None:
                    return None
                raise _Failed(ErrorInfo(code="cancelled",
                                        message="the command was cancelled during the "
                                                "transfer; nothing was kept"))
            if state is None or state.final:
                final_seen = True
            elif state is CommandStatus.PENDING_APPROVAL:
                return None
            elif state is CommandStatus.QUEUED:
                if clock.now() > (record.expires_at or clock.now()) + QUEUED_GRACE_S:
                    return None
            else:  # running
                running_since = running_since or time.monotonic()
                quiet_since = max(running_since, last_entry_at)
                if time.monotonic() - quiet_since > stall_s:
                    raise _Failed(ErrorInfo(
                        code=TransferStalledError.code,
                        message=f"the agent sent nothing for {stall_s:g} s; the transfer was "
                                "given up and nothing was kept",
                        hint="see the agent's log on the endpoint; run getfile again"))

    def _take(self, record: CommandRecord, incoming: _Incoming, raw: dict[bytes, bytes],
              started_at: float) -> Receipt | None:
        """Apply one entry; the receipt once the transfer is stored, else None."""
        try:
            entry = parse_entry(raw)
        except ValueError as exc:
            raise _malformed(str(exc)) from None
        if entry.kind == KIND_BEGIN:
            self._on_begin(record, incoming, entry)
            return None
        if entry.kind == KIND_ERROR:  # the agent gave up and says why
            raise _Failed(ErrorInfo(code=entry.code, message=entry.message))
        if incoming.begin is None:
            raise _malformed(f"a {entry.kind} entry before the begin entry")
        if entry.kind == KIND_CHUNK:
            self._on_chunk(incoming, entry)
            return None
        return self._on_end(record, incoming, entry, started_at)

    def _on_begin(self, record: CommandRecord, incoming: _Incoming, entry: TransferEntry) -> None:
        if incoming.begin is not None:
            raise _malformed("a second begin entry")
        limit = self.settings.getfile_max_bytes
        if entry.size_bytes > limit:
            raise _Failed(ErrorInfo(
                code=FileTooLargeError.code,
                message=f"the agent announced {entry.size_bytes} bytes, over the orchestrator's "
                        f"getfile limit of {limit} bytes; nothing was kept"))
        incoming.begin = entry
        incoming.out, incoming.temp = self.store.create_temp(record.command_id)

    def _on_chunk(self, incoming: _Incoming, entry: TransferEntry) -> None:
        assert incoming.begin is not None and incoming.out is not None
        if entry.offset != incoming.received:
            raise _malformed(f"a chunk at offset {entry.offset}, expected {incoming.received} "
                             "(a chunk lost or repeated)")
        if incoming.received + len(entry.data) > incoming.begin.size_bytes:
            what = "at most " if incoming.begin.streamed else ""
            raise _malformed(f"more bytes than the {what}{incoming.begin.size_bytes} announced")
        incoming.out.write(entry.data)
        incoming.hasher.update(entry.data)
        incoming.received += len(entry.data)
        incoming.chunks += 1

    def _on_end(self, record: CommandRecord, incoming: _Incoming, entry: TransferEntry,
                started_at: float) -> Receipt:
        assert incoming.begin is not None and incoming.out is not None and incoming.temp
        incoming.sha256_agent = entry.sha256
        incoming.sha256_arrival = incoming.hasher.hexdigest()
        announced = incoming.begin.size_bytes
        streamed = incoming.begin.streamed
        if entry.size_bytes != incoming.received or (
                entry.size_bytes > announced if streamed else entry.size_bytes != announced):
            of_what = (f"(at most {announced} announced)" if streamed
                       else f"of a {announced}-byte file")
            raise _Failed(ErrorInfo(
                code=HashMismatchError.code,
                message=f"the agent sent {entry.size_bytes} bytes {of_what} but "
                        f"{incoming.received} arrived; nothing was kept"))
        if incoming.sha256_arrival != entry.sha256:
            raise _Failed(ErrorInfo(
                code=HashMismatchError.code,
                message=f"sha256 on arrival {incoming.sha256_arrival} differs from the agent's "
                        f"{entry.sha256}: the bytes changed on the way; nothing was kept",
                hint="run getfile again; if it repeats, suspect the broker or the network"))
        os.fsync(incoming.out.fileno())
        incoming.out.close()
        incoming.out = None
        object_path = self.store.commit(incoming.temp, entry.sha256)
        incoming.temp = None
        begin = incoming.begin
        stored = EvidenceRecord(
            sha256=entry.sha256, size_bytes=entry.size_bytes, device_id=record.device_id,
            path=begin.path, resolved_path=begin.resolved_path or None, mtime=begin.mtime,
            user=record.user, session_id=record.session_id, command_id=record.command_id,
            sha256_agent=entry.sha256, started_at=started_at, stored_at=clock.now())
        self.store.add(stored)
        self.audit.append(
            record.user, "evidence.stored", stored.sha256, "allowed",
            device=record.device_id, session=record.session_id or None,
            command_id=record.command_id, path=begin.path,
            resolved_path=begin.resolved_path or None, size_bytes=stored.size_bytes,
            sha256_agent=entry.sha256, sha256_arrival=incoming.sha256_arrival,
            chunks=incoming.chunks, started_at=started_at, finished_at=stored.stored_at)
        return Receipt(stored=stored, object_path=str(object_path))

    def _audit_failed(self, record: CommandRecord, incoming: _Incoming,
                      error: ErrorInfo) -> None:
        begin = incoming.begin
        try:
            self.audit.append(
                record.user, "evidence.failed", record.device_id, "failed",
                device=record.device_id, session=record.session_id or None,
                command_id=record.command_id,
                path=begin.path if begin else (record.args or {}).get("path"),
                size_bytes=begin.size_bytes if begin else None,
                received_bytes=incoming.received, sha256_agent=incoming.sha256_agent,
                sha256_arrival=incoming.sha256_arrival, reason=error.code,
                message=error.message)
        except (redis.RedisError, ValueError) as exc:  # the failure stands; it is also logged
            log.error("could not audit the failed transfer of %s: %s", record.command_id, exc)


def _malformed(problem: str) -> _Failed:
    return _Failed(ErrorInfo(code=TransferError.code,
                             message=f"malformed transfer stream: {problem}; nothing was kept"))
