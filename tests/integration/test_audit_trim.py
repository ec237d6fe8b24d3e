"""Trimming the audit stream under a signed checkpoint: real Redis, real keys, real files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from orchestrator.audit.export_file import export_lines, verify_file
from orchestrator.audit.log import AuditLog
from orchestrator.audit.trim import trim_audit
from orchestrator.audit.witness import HeadWitness
from tasks import clock
from tasks.errors import AuditChainBrokenError, UsageError
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, Verifier, generate_keypair

pytestmark = pytest.mark.integration

#: Entries written at t=100..104 (old) and t=200..202 (recent).
OLD, RECENT = 5, 3


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """A clock the test moves by setting `fake_time[0]`."""
    current = [100.0]
    monkeypatch.setattr(clock, "now", lambda: current[0])
    yield current


@pytest.fixture
def audit(
    redis_client: redis.Redis, keys: Keys, signer: Signer, tmp_path: Path
) -> Iterator[AuditLog]:
    """The orchestrator's log: signed entries, the head witnessed in this test's directory."""
    log = AuditLog(redis_client, keys, signer,
                   witness=HeadWitness.for_prefix(tmp_path / "witness", keys.prefix))
    yield log
    log.close()


@pytest.fixture
def signer(signing_keys: KeyPair) -> Signer:
    return Signer.from_file(signing_keys.private_path)


@pytest.fixture
def verifier(signing_keys: KeyPair) -> Verifier:
    return Verifier.from_file(signing_keys.public_path)


@pytest.fixture
def other_verifier(tmp_path: Path) -> Verifier:
    """The public key of another orchestrator: it must not vouch for our checkpoints."""
    return Verifier.from_file(generate_keypair(tmp_path / "other-keys").public_path)


@pytest.fixture
def chain(audit: AuditLog, fake_time: list[float]) -> list[str]:
    """OLD entries at t=100.., RECENT at t=200..; their ids, oldest first."""
    ids = []
    for i in range(OLD + RECENT):
        fake_time[0] = 100.0 + i if i < OLD else 200.0 + i - OLD
        ids.append(audit.append("alice", "command.requested", "dev1", "allowed", n=i).id)
    fake_time[0] = 300.0
    return ids


def stored_checkpoint(client: redis.Redis, keys: Keys) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(client.get(keys.audit_checkpoint) or b"null"))


def export_to(audit: AuditLog, path: Path) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.writelines(export_lines(audit, audit.snapshot()))
    return path


def rewrite_header(path: Path, **changes: Any) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.loads(lines[0])
    lines[0] = json.dumps({**header, **changes}) + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def test_trim_removes_older_entries_and_the_chain_still_verifies(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier,
    redis_client: redis.Redis, keys: Keys,
) -> None:
    removed_hash = audit.read()[OLD - 1].hash
    result = trim_audit(audit, signer, actor="root", before=150.0)
    assert result.removed == OLD
    remaining = [e.id for e in audit.read()]
    assert remaining[:RECENT] == chain[OLD:]
    checkpoint = stored_checkpoint(redis_client, keys)
    assert checkpoint["anchor"] == removed_hash and checkpoint["anchor_id"] == chain[OLD - 1]
    assert checkpoint["removed"] == OLD and checkpoint["key_id"] == signer.key_id
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
    assert verdict.trimmed == OLD and verdict.entries == RECENT + 1


def test_the_trim_is_an_audit_entry(
    audit: AuditLog, chain: list[str], signer: Signer
) -> None:
    result = trim_audit(audit, signer, actor="root", before=150.0)
    newest = audit.read()[-1]
    assert result.entry is not None and newest.id == result.entry.id
    assert (newest.actor, newest.action, newest.decision) == ("root", "audit.trimmed", "allowed")
    assert newest.details["before"] == 150.0 and newest.details["removed"] == OLD
    assert result.checkpoint is not None
    assert newest.details["anchor"] == result.checkpoint.anchor


def test_a_second_trim_extends_the_checkpoint(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier,
    redis_client: redis.Redis, keys: Keys,
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    first = stored_checkpoint(redis_client, keys)
    result = trim_audit(audit, signer, actor="root", before=250.0)
    second = stored_checkpoint(redis_client, keys)
    assert result.removed == RECENT
    assert second["removed"] == OLD + RECENT
    assert second["anchor_id"] == chain[-1] and second["anchor"] != first["anchor"]
    assert second["signature"] != first["signature"]
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
    assert verdict.trimmed == OLD + RECENT


def test_trim_never_removes_the_newest_entry(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier
) -> None:
    result = trim_audit(audit, signer, actor="root", before=10_000.0)
    assert result.removed == OLD + RECENT - 1
    assert [e.id for e in audit.read()][0] == chain[-1]
    assert audit.verify(verifier).ok


def test_a_trim_that_would_remove_nothing_changes_nothing(
    audit: AuditLog, chain: list[str], signer: Signer, redis_client: redis.Redis, keys: Keys
) -> None:
    head = redis_client.get(keys.audit_head)
    result = trim_audit(audit, signer, actor="root", before=50.0)
    assert result.removed == 0 and result.checkpoint is None
    assert result.message.startswith("nothing to trim") and "oldest is from" in result.message
    assert redis_client.xlen(keys.audit) == len(chain)
    assert redis_client.get(keys.audit_head) == head
    assert redis_client.get(keys.audit_checkpoint) is None


def test_trim_refuses_to_remove_entries_that_do_not_verify(
    audit: AuditLog, chain: list[str], signer: Signer, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.xdel(keys.audit, chain[2])
    with pytest.raises(AuditChainBrokenError, match="refusing to trim.*prev mismatch"):
        trim_audit(audit, signer, actor="root", before=150.0)
    assert redis_client.xlen(keys.audit) == len(chain) - 1
    assert redis_client.get(keys.audit_checkpoint) is None


def test_trim_refuses_to_extend_a_forged_checkpoint(
    audit: AuditLog, chain: list[str], signer: Signer, redis_client: redis.Redis, keys: Keys
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    forged = {**stored_checkpoint(redis_client, keys), "removed": 1}
    redis_client.set(keys.audit_checkpoint, json.dumps(forged))
    length = redis_client.xlen(keys.audit)
    with pytest.raises(AuditChainBrokenError, match="signature does not verify"):
        trim_audit(audit, signer, actor="root", before=250.0)
    assert redis_client.xlen(keys.audit) == length


def test_verify_fails_without_a_key_or_with_another_key(
    audit: AuditLog, chain: list[str], signer: Signer, other_verifier: Verifier,
    redis_client: redis.Redis, keys: Keys,
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    reader = AuditLog(redis_client, keys)  # no key of its own
    assert "no public key" in str(reader.verify(None).problem)
    verdict = audit.verify(other_verifier)
    assert not verdict.ok and "signed by key" in str(verdict.problem)


@pytest.mark.parametrize(
    ("field", "value"), [("removed", 1), ("anchor", "0" * 64), ("anchor_ts", 1.0)]
)
def test_verify_fails_when_the_stored_checkpoint_is_edited(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier,
    redis_client: redis.Redis, keys: Keys, field: str, value: object,
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    edited = {**stored_checkpoint(redis_client, keys), field: value}
    redis_client.set(keys.audit_checkpoint, json.dumps(edited))
    verdict = audit.verify(verifier)
    assert not verdict.ok and "signature does not verify" in str(verdict.problem)


def test_verify_fails_when_the_checkpoint_is_deleted(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier,
    redis_client: redis.Redis, keys: Keys,
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    redis_client.delete(keys.audit_checkpoint)
    verdict = audit.verify(verifier)
    assert not verdict.ok and "oldest entry does not start the chain" in str(verdict.problem)
    assert verdict.entry_id == chain[OLD]


def test_an_export_after_a_trim_verifies_offline_with_the_public_key(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier, tmp_path: Path
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    path = export_to(audit, tmp_path / "trimmed.jsonl")
    header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert header["checkpoint"]["removed"] == OLD
    verdict = verify_file(path, lambda: verifier)
    assert verdict.ok, verdict.problem
    assert verdict.trimmed == OLD and verdict.entries == RECENT + 1


def test_a_trimmed_export_fails_with_another_public_key(
    audit: AuditLog, chain: list[str], signer: Signer, other_verifier: Verifier, tmp_path: Path
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    path = export_to(audit, tmp_path / "trimmed.jsonl")
    verdict = verify_file(path, lambda: other_verifier)
    assert not verdict.ok and verdict.line == 1
    assert "signed by key" in str(verdict.problem)


def test_a_trimmed_export_without_a_key_asks_for_one(
    audit: AuditLog, chain: list[str], signer: Signer, tmp_path: Path
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    path = export_to(audit, tmp_path / "trimmed.jsonl")
    with pytest.raises(UsageError) as caught:
        verify_file(path, lambda: None)
    assert "--public-key" in str(caught.value.hint)


@pytest.mark.parametrize(("field", "value"), [("anchor", "a" * 64), ("removed", 2)])
def test_an_edited_checkpoint_in_the_export_fails(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier, tmp_path: Path,
    field: str, value: object,
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    path = export_to(audit, tmp_path / "trimmed.jsonl")
    header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    rewrite_header(path, checkpoint={**header["checkpoint"], field: value})
    verdict = verify_file(path, lambda: verifier)
    assert not verdict.ok and verdict.line == 1
    assert "signature does not verify" in str(verdict.problem)


def test_a_checkpoint_removed_from_the_export_fails(
    audit: AuditLog, chain: list[str], signer: Signer, verifier: Verifier, tmp_path: Path
) -> None:
    trim_audit(audit, signer, actor="root", before=150.0)
    path = export_to(audit, tmp_path / "trimmed.jsonl")
    rewrite_header(path, checkpoint=None)
    verdict = verify_file(path, lambda: verifier)
    # The signed header names its checkpoint: removing it is caught there, at line 1.
    assert not verdict.ok and verdict.line == 1
    assert "header: signature does not verify" in str(verdict.problem)


def test_a_trim_never_ends_inside_a_run_of_staged_entries(
    audit: AuditLog, signer: Signer, verifier: Verifier, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run is signed by its last entry only: removing its first entries without that one
    would remove entries no checked signature covered. The trim stops before the run."""
    now = [100.0]

    def tick() -> float:
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(clock, "now", tick)
    audit.append("alice", "session.opened", "dev1", "allowed")
    pipe = redis_client.pipeline(transaction=False)
    finish = audit.stage_many(pipe, [("alice", "command.requested", "dev1", "allowed", {"n": i})
                                     for i in range(4)])
    run = finish(pipe.execute())
    assert [e.sig.endswith(":~") for e in run if e.sig] == [True, True, True, False]
    audit.append("alice", "session.closed", "dev1", "allowed")
    result = trim_audit(audit, signer, actor="root", before=run[1].ts + 0.5)
    assert result.removed == 1  # the entry before the run, not the run's first two
    assert [e.id for e in audit.read()][:4] == [e.id for e in run]
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
