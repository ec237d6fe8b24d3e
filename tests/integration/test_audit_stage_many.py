"""Many audit entries staged on one pipeline: chained in order, never forked, none lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from orchestrator.audit.log import AuditLog
from orchestrator.audit.witness import HeadWitness, id_order
from tasks.auditchain import ENTRY_FIELDS, RUN_ENTRIES, AuditChain
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
    assert list(written) == audit.read()[2:]
    assert audit.verify(Verifier.from_file(signing_keys.public_path)).ok


@pytest.mark.parametrize("entries_of_run", [
    [("alice", "command.requested", "dev1", "allowed", {"command_id": "c1", "ratio": 2.5})],
    [("ålice 😀", "command.requested", "dév\n2", "", {"line": "é\x00", "n": [1, None]}),
     ("alice", "command.requested", "dev3", "allowed", {})],
    [("alice", "command.requested", "dev4", "allowed", {"line": "x" * 5000}),
     ("alice", "command.requested", "dev5", "allowed", {"args": {"path": "/srv"}})],
    [("alice", "command.requested", "dev6", "allowed", {"name": "\ud800x"})],
], ids=["plain", "not-ascii", "long-value", "lone-surrogate"])
def test_a_run_stores_its_entries_as_single_appends_are_stored_and_returns_them(
        audit: AuditLog, redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair,
        entries_of_run: list[tuple[str, str, str, str, dict[str, object]]]) -> None:
    audit.append("alice", "session.opened", "dev0", "allowed")
    pipe = redis_client.pipeline(transaction=False)
    finish = audit.stage_many(pipe, entries_of_run)
    written = finish(pipe.execute())
    stored = cast(list[tuple[bytes, dict[bytes, bytes]]], redis_client.xrange(keys.audit))
    # The same fields in the same order as an entry appended on its own.
    assert [list(fields) for _, fields in stored[1:]] == [list(stored[0][1])] * len(written)
    assert list(written) == audit.read()[1:]
    assert [(e.actor, e.target, e.details) for e in written] == [
        (actor, target, details) for actor, _, target, _, details in entries_of_run]
    assert audit.verify(Verifier.from_file(signing_keys.public_path)).ok


def test_a_long_run_goes_in_several_script_calls_each_under_one_millisecond(
        audit: AuditLog, redis_client: redis.Redis, signing_keys: KeyPair) -> None:
    pipe = redis_client.pipeline(transaction=False)
    finish = audit.stage_many(pipe, entries(RUN_ENTRIES + 3))
    assert len(pipe) == 2
    written = finish(pipe.execute())
    assert list(written) == audit.read()
    for run in (written[:RUN_ENTRIES], written[RUN_ENTRIES:]):
        first_ms, first_seq = id_order(run[0].id)
        assert [id_order(e.id) for e in run] == [
            (first_ms, first_seq + i) for i in range(len(run))]
    assert audit.verify(Verifier.from_file(signing_keys.public_path)).ok


def test_an_agents_run_is_chained_without_signature_or_mac(
        redis_client: redis.Redis, keys: Keys) -> None:
    chain = AuditChain(redis_client, keys)
    pipe = redis_client.pipeline(transaction=False)
    finish = chain.stage_many(pipe, [("agent:dev1", "command.refused", "dev1", "denied",
                                      {"n": i}) for i in range(3)])
    written = finish(pipe.execute())
    assert [e.sig for e in written] == [None] * 3
    stored = cast(list[tuple[bytes, dict[bytes, bytes]]], redis_client.xrange(keys.audit))
    assert [list(fields) for _, fields in stored] == [[f.encode() for f in ENTRY_FIELDS]] * 3
    reader = AuditLog(redis_client, keys)
    assert list(written) == reader.read()
    assert reader.verify().ok
