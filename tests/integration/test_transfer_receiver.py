"""The orchestrator's transfer receiver on a real Redis and disk, the test playing the agent."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config import Settings
from orchestrator.audit.log import AuditLog
from orchestrator.commands.records import CommandRecord, record_fields
from orchestrator.files.evidence import EvidenceStore
from orchestrator.files.transfer import Receipt, TransferReceiver, merge_receipt
from tasks import clock
from tasks.envelope import CommandOutcome, CommandStatus, ErrorInfo
from tasks.keys import Keys
from tasks.signing import Signer
from tasks.state import CommandStateStore
from tasks.transfer import begin_fields, chunk_fields, end_fields, error_fields

CHUNK = 4096


class Rig:
    """A receiver over a test's own prefix and evidence directory, and the agent's side."""

    def __init__(self, client: redis.Redis, keys: Keys, root: Path, **settings: Any) -> None:
        self.client = client
        self.keys = keys
        self.store = EvidenceStore(root, client, keys)
        self.audit = AuditLog(client, keys, Signer(Ed25519PrivateKey.generate()))
        self.states = CommandStateStore(client, keys)
        settings.setdefault("transfer_stall_timeout_s", 5.0)
        self.receiver = TransferReceiver(client, keys, self.states, self.audit, self.store,
                                         Settings(**settings))

    def command(self, state: CommandStatus = CommandStatus.RUNNING,
                expires_in_s: float = 30) -> CommandRecord:
        now = clock.now()
        record = CommandRecord(
            command_id=uuid.uuid4().hex, session_id="S1", device_id="dev-x", user="alice",
            command="getfile", line="getfile /srv/x.bin", args={"path": "/srv/x.bin"},
            status=state, created_at=now, expires_at=now + expires_in_s)
        self.client.hset(self.keys.command(record.command_id),
                         mapping=dict[Any, Any](record_fields(record)))
        return record

    def send(self, record: CommandRecord, *entries: dict[str, Any]) -> None:
        for fields in entries:
            self.client.xadd(self.keys.xfer(record.command_id), dict[Any, Any](fields))

    def send_file(self, record: CommandRecord, data: bytes, *, sha256: str | None = None,
                  corrupt_chunk: int | None = None) -> None:
        """begin, chunks and end as an agent sends them (one chunk altered, if asked)."""
        self.send(record, begin_fields(len(data), CHUNK, "/srv/x.bin", None, 1700000000.0))
        count = 0
        for n, offset in enumerate(range(0, len(data), CHUNK)):
            chunk = data[offset:offset + CHUNK]
            if n == corrupt_chunk:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            self.send(record, chunk_fields(offset, chunk))
            count += 1
        self.send(record, end_fields(len(data), sha256 or hashlib.sha256(data).hexdigest(),
                                     count))

    def objects(self) -> list[Path]:
        return [p for p in (self.store.root / "sha256").rglob("*") if p.is_file()] \
            if (self.store.root / "sha256").exists() else []

    def temp_files(self) -> list[Path]:
        return list(self.store.temp_dir.iterdir()) if self.store.temp_dir.exists() else []

    def audit_entries(self, action: str) -> list[Any]:
        return [e for e in self.audit.read() if e.action == action]

    def assert_nothing_kept(self, record: CommandRecord) -> None:
        assert self.objects() == []
        assert self.temp_files() == []
        assert self.store.acquisitions() == []
        assert not self.client.exists(self.keys.xfer(record.command_id))


@pytest.fixture
def rig(redis_client: redis.Redis, keys: Keys, tmp_path: Path) -> Callable[..., Rig]:
    return lambda **settings: Rig(redis_client, keys, tmp_path / "evidence", **settings)


def test_verified_bytes_are_stored_by_sha256_with_a_custody_record_and_audit(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    record = r.command()
    data = os.urandom(5 * CHUNK + 77)
    sha = hashlib.sha256(data).hexdigest()
    r.send_file(record, data)
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.error is None and receipt.stored is not None
    stored = r.store.object_path(sha)
    assert receipt.object_path == str(stored)
    assert stored.read_bytes() == data
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(r.store.root.stat().st_mode) == 0o700
    (listed,) = r.store.acquisitions()
    assert (listed.sha256, listed.size_bytes, listed.device_id, listed.user, listed.path) == (
        sha, len(data), "dev-x", "alice", "/srv/x.bin")
    assert listed.command_id == record.command_id and listed.session_id == "S1"
    assert listed.started_at <= listed.stored_at
    (entry,) = r.audit_entries("evidence.stored")
    assert entry.actor == "alice" and entry.target == sha
    d = entry.details
    assert d["sha256_agent"] == d["sha256_arrival"] == sha
    assert (d["device"], d["path"], d["size_bytes"], d["command_id"], d["session"]) == (
        "dev-x", "/srv/x.bin", len(data), record.command_id, "S1")
    assert d["started_at"] <= d["finished_at"]
    assert r.temp_files() == []
    assert not r.client.exists(r.keys.xfer(record.command_id))
    assert r.states.get(record.command_id)["progress"] == (
        f'{{"bytes": {len(data)}, "size": {len(data)}}}')


def test_a_chunk_altered_in_flight_fails_loudly_and_keeps_nothing(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    record = r.command()
    data = os.urandom(4 * CHUNK)
    r.send_file(record, data, corrupt_chunk=2)
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.stored is None and receipt.error is not None
    assert receipt.error.code == "hash_mismatch"
    assert hashlib.sha256(data).hexdigest() in receipt.error.message
    r.assert_nothing_kept(record)
    (entry,) = r.audit_entries("evidence.failed")
    assert entry.details["reason"] == "hash_mismatch"
    assert entry.details["sha256_agent"] == hashlib.sha256(data).hexdigest()
    assert entry.details["sha256_arrival"] not in (None, entry.details["sha256_agent"])


def test_an_end_marker_with_another_size_fails_and_keeps_nothing(rig: Callable[..., Rig]) -> None:
    r = rig()
    record = r.command()
    data = os.urandom(2 * CHUNK)
    r.send(record, begin_fields(len(data), CHUNK, "/srv/x.bin", None, 1.0),
           chunk_fields(0, data[:CHUNK]), chunk_fields(CHUNK, data[CHUNK:]),
           end_fields(len(data) + 1, hashlib.sha256(data).hexdigest(), 2))
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.error is not None
    assert receipt.error.code == "hash_mismatch"
    r.assert_nothing_kept(record)


@pytest.mark.parametrize(("entries", "code", "words"), [
    ([chunk_fields(0, b"x")], "transfer_failed", "before the begin entry"),
    ([begin_fields(10, CHUNK, "/x", None, 1.0), chunk_fields(5, b"x")], "transfer_failed",
     "offset 5, expected 0"),
    ([begin_fields(2, CHUNK, "/x", None, 1.0), chunk_fields(0, b"xyz")], "transfer_failed",
     "more bytes than the 2 announced"),
    ([begin_fields(1, CHUNK, "/x", None, 1.0), begin_fields(1, CHUNK, "/x", None, 1.0)],
     "transfer_failed", "second begin"),
    ([{"kind": "bogus"}], "transfer_failed", "unknown transfer entry kind"),
    ([begin_fields(10, CHUNK, "/x", None, 1.0), chunk_fields(0, b"x" * 4),
      error_fields("file_changed", "/x was deleted during transfer; nothing was kept")],
     "file_changed", "was deleted during transfer"),
    ([begin_fields(10**6, CHUNK, "/x", None, 1.0)], "file_too_large", "over the orchestrator"),
])
def test_a_bad_or_failed_stream_keeps_nothing_and_is_audited(
    rig: Callable[..., Rig], entries: list[dict[str, Any]], code: str, words: str,
) -> None:
    r = rig(getfile_max_bytes=10**6 - 1)
    record = r.command()
    r.send(record, *entries)
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.error is not None
    assert receipt.error.code == code
    assert words in receipt.error.message
    r.assert_nothing_kept(record)
    (entry,) = r.audit_entries("evidence.failed")
    assert entry.details["reason"] == code and entry.details["command_id"] == record.command_id


def test_an_agent_that_stops_sending_is_given_up_after_the_stall_timeout(
    rig: Callable[..., Rig],
) -> None:
    r = rig(transfer_stall_timeout_s=0.5)
    record = r.command()
    r.send(record, begin_fields(10 * CHUNK, CHUNK, "/x", None, 1.0),
           chunk_fields(0, b"a" * CHUNK))
    started = time.monotonic()
    receipt = r.receiver.receive(record)
    assert 0.5 <= time.monotonic() - started < 5
    assert receipt is not None and receipt.error is not None
    assert receipt.error.code == "transfer_stalled"
    r.assert_nothing_kept(record)


def test_a_command_that_ended_before_sending_leaves_nothing_to_receive(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    record = r.command(CommandStatus.FAILED)
    started = time.monotonic()
    assert r.receiver.receive(record) is None
    assert time.monotonic() - started < 2
    r.assert_nothing_kept(record)
    assert r.audit_entries("evidence.failed") == []


def test_a_queued_command_past_its_expiry_is_left_to_the_dispatcher(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    record = r.command(CommandStatus.QUEUED, expires_in_s=-5)
    assert r.receiver.receive(record) is None


def test_a_command_that_ended_midway_keeps_nothing(rig: Callable[..., Rig]) -> None:
    r = rig()
    record = r.command(CommandStatus.FAILED)
    r.send(record, begin_fields(3 * CHUNK, CHUNK, "/x", None, 1.0),
           chunk_fields(0, b"a" * CHUNK))
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.error is not None
    assert "before the whole file arrived" in receipt.error.message
    r.assert_nothing_kept(record)


def test_cancelling_the_command_mid_transfer_keeps_nothing(rig: Callable[..., Rig]) -> None:
    r = rig()
    record = r.command()
    r.send(record, begin_fields(100 * CHUNK, CHUNK, "/x", None, 1.0),
           chunk_fields(0, b"a" * CHUNK))
    timer = threading.Timer(0.3, lambda: r.states.transition(
        record.command_id, CommandStatus.CANCELLED, [CommandStatus.RUNNING]))
    timer.start()
    try:
        receipt = r.receiver.receive(record)
    finally:
        timer.cancel()
    assert receipt is not None and receipt.error is not None
    assert receipt.error.code == "cancelled"
    r.assert_nothing_kept(record)


def test_the_same_bytes_collected_twice_are_stored_once_with_two_records(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    data = os.urandom(CHUNK + 1)
    first, second = r.command(), r.command()
    r.send_file(first, data)
    r.receiver.receive(first)
    inode = r.store.object_path(hashlib.sha256(data).hexdigest()).stat().st_ino
    r.send_file(second, data)
    receipt = r.receiver.receive(second)
    assert receipt is not None and receipt.stored is not None
    assert len(r.objects()) == 1
    assert r.store.object_path(receipt.stored.sha256).stat().st_ino == inode
    assert {e.command_id for e in r.store.find(receipt.stored.sha256)} == {
        first.command_id, second.command_id}
    assert r.temp_files() == []


def _outcome(status: CommandStatus, result: dict[str, Any] | None) -> CommandOutcome:
    return CommandOutcome(command_id="c", device_id="d", command="getfile", status=status,
                          result=result)


def test_merge_adds_the_evidence_to_a_completed_result(rig: Callable[..., Rig]) -> None:
    r = rig()
    record = r.command()
    data = b"evidence"
    r.send_file(record, data)
    receipt = r.receiver.receive(record)
    assert receipt is not None
    merged = merge_receipt(_outcome(CommandStatus.COMPLETED, {"sha256": "x"}), receipt)
    assert merged.status is CommandStatus.COMPLETED
    assert merged.result is not None
    assert merged.result["evidence_sha256"] == hashlib.sha256(data).hexdigest()
    assert merged.result["evidence_path"] == receipt.object_path
    assert merged.result["sha256"] == "x"


def test_merge_fails_a_completed_command_whose_file_was_not_kept() -> None:
    error = ErrorInfo(code="hash_mismatch", message="differs")
    merged = merge_receipt(_outcome(CommandStatus.COMPLETED, {"sha256": "x"}),
                           Receipt(error=error))
    assert merged.status is CommandStatus.FAILED and merged.error == error
    failed = _outcome(CommandStatus.FAILED, None)
    assert merge_receipt(failed, None) == failed


def test_merge_gives_a_failed_command_the_reason_the_receiver_gave_up() -> None:
    # The agent only saw the stream abandoned; the receiver knows why.
    abandoned = _outcome(CommandStatus.FAILED, None).model_copy(update={
        "error": ErrorInfo(code="transfer_failed", message="transfer abandoned")})
    full = ErrorInfo(code="evidence_disk_full", message="the orchestrator's disk is full")
    merged = merge_receipt(abandoned, Receipt(error=full))
    assert merged.status is CommandStatus.FAILED and merged.error == full


def test_an_evidence_store_that_cannot_write_fails_the_transfer_and_deletes_the_stream(
    redis_client: redis.Redis, keys: Keys, tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store should be")
    r = Rig(redis_client, keys, blocker)
    record = r.command()
    r.send_file(record, b"payload")
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.error is not None
    assert receipt.error.code == "transfer_failed"
    assert "evidence store could not write" in receipt.error.message
    assert not redis_client.exists(keys.xfer(record.command_id))
    assert r.store.acquisitions() == []
    (entry,) = r.audit_entries("evidence.failed")
    assert entry.details["reason"] == "transfer_failed"


def test_a_streamed_transfer_is_stored_with_the_size_its_end_gives(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    record = r.command()
    data = os.urandom(3 * CHUNK + 5)
    r.send(record, begin_fields(10 * CHUNK, CHUNK, "/srv/app", None, 1.0, streamed=True),
           *(chunk_fields(o, data[o:o + CHUNK]) for o in range(0, len(data), CHUNK)),
           end_fields(len(data), hashlib.sha256(data).hexdigest(), 4))
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.error is None and receipt.stored is not None
    assert receipt.stored.size_bytes == len(data)
    assert r.store.object_path(receipt.stored.sha256).read_bytes() == data
    assert r.states.get(record.command_id)["progress"] == f'{{"bytes": {len(data)}, "size": null}}'


def test_a_streamed_transfer_past_its_announced_bound_keeps_nothing(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    record = r.command()
    r.send(record, begin_fields(10, CHUNK, "/srv/app", None, 1.0, streamed=True),
           chunk_fields(0, b"x" * 11), end_fields(11, hashlib.sha256(b"x" * 11).hexdigest(), 1))
    receipt = r.receiver.receive(record)
    assert receipt is not None and receipt.error is not None
    assert "more bytes than the at most 10 announced" in receipt.error.message
    r.assert_nothing_kept(record)
