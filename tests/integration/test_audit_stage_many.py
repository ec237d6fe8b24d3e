"""Many audit entries staged on one pipeline: chained in order, never forked, none lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.audit.log import AuditLog
from orchestrator.audit.witness import HeadWitness
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, Verifier


@pytest.fixture
def audit(redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair, tmp_path: Path
          ) -> Iterator[AuditLog]:
    log = AuditLog(redis_client, keys, Signer.from_file(signing_keys.private_path),
                   witness=HeadWitness.for_prefix(tmp_path / "witness", keys.prefix))
    yield log
    log.close()


def entries(n: int) -> list[tuple[str, str, str, str, dict[str, object]]]:
    return [("alice", "command.requested", f"dev{i}", "allowed", {"command_id": f"c{i}"})
            for i in range(n)]


def test_staged_entries_chain_in_order_in_one_round_trip(
        audit: AuditLog, redis_client: redis.Redis, signing_keys: KeyPair) -> None:
    audit.append("alice", "session.opened", "dev0", "allowed")
    pipe = redis_client.pipeline(transaction=False)
    finish = audit.stage_many(pipe, entries(50))
    written = finish(pipe.execute())
    assert [e.details["command_id"] for e in written] == [f"c{i}" for i in range(50)]
    assert all(b.prev == a.hash for a, b in zip(written, written[1:], strict=False))
    verdict = audit.verify(Verifier.from_file(signing_keys.public_path))
    assert verdict.ok and verdict.entries == 51
    # The witness moved to the newest entry of the run.
    assert audit.snapshot().head == written[-1].hash


def test_a_writer_that_gets_there_first_costs_a_retry_not_an_entry(
        audit: AuditLog, redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair,
        tmp_path: Path) -> None:
    audit.append("alice", "session.opened", "dev0", "allowed")
    other = AuditLog(redis_client, keys, Signer.from_file(signing_keys.private_path),
                     witness=HeadWitness.for_prefix(tmp_path / "witness", keys.prefix))
    try:
        pipe = redis_client.pipeline(transaction=False)
        finish = audit.stage_many(pipe, entries(20))
        other.append("bob", "session.opened", "dev9", "allowed")  # moves the head first
        written = finish(pipe.execute())
    finally:
        other.close()
    assert len(written) == 20
    actions = [(e.actor, e.details.get("command_id")) for e in audit.read()]
    assert actions[:2] == [("alice", None), ("bob", None)]
    assert actions[2:] == [("alice", f"c{i}") for i in range(20)]
    assert audit.verify(Verifier.from_file(signing_keys.public_path)).ok
