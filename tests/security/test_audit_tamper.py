"""An intruder who can write anything to Redis, but holds neither the orchestrator's key nor its
disk, deletes, truncates, edits and rechains the audit stream: `verify` names every attempt.

Each attack is made with plain Redis commands (DEL, XDEL, XADD, SET) and, where it needs one,
hashes recomputed with `compute_hash`, as the intruder would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from orchestrator.audit.log import AuditLog, AuditVerdict
from orchestrator.audit.trim import trim_audit
from orchestrator.audit.witness import HeadWitness, WitnessMark
from tasks import clock
from tasks.auditchain import AuditChain, compute_hash
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, Verifier

pytestmark = pytest.mark.integration

Fields = dict[str, str]


@pytest.fixture
def signer(signing_keys: KeyPair) -> Signer:
    return Signer.from_file(signing_keys.private_path)


@pytest.fixture
def verifier(signing_keys: KeyPair) -> Verifier:
    return Verifier.from_file(signing_keys.public_path)


@pytest.fixture
def witness_dir(tmp_path: Path) -> Path:
    """The orchestrator's own disk: out of the intruder's reach."""
    return tmp_path / "witness"


@pytest.fixture
def audit(
    redis_client: redis.Redis, keys: Keys, signer: Signer, witness_dir: Path
) -> Iterator[AuditLog]:
    """The orchestrator's log: every entry signed, its newest witnessed on disk."""
    log = AuditLog(redis_client, keys, signer,
                   witness=HeadWitness.for_prefix(witness_dir, keys.prefix))
    yield log
    log.close()


@pytest.fixture
def agent(redis_client: redis.Redis, keys: Keys) -> AuditChain:
    """An agent's append side: the same chain, no key."""
    return AuditChain(redis_client, keys)


def fill(audit: AuditLog, n: int = 5) -> list[str]:
    return [audit.append("alice", "command.requested", "dev1", "allowed", n=i).id
            for i in range(n)]


def stored(client: redis.Redis, keys: Keys) -> list[tuple[str, Fields]]:
    """The stream as the intruder reads it."""
    raw = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.audit))
    return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in raw]


def rehash(entries: list[tuple[str, Fields]], start: int) -> None:
    """Recompute every prev and hash from `start` on (the signatures cannot be redone)."""
    for i in range(start, len(entries)):
        fields = entries[i][1]
        fields["prev"] = entries[i - 1][1]["hash"] if i else fields["prev"]
        # The hashed fields (docs/audit.md): `sig` and `mac` lie outside the hash.
        body: dict[str, Any] = {k: v for k, v in fields.items() if k not in ("hash", "sig", "mac")}
        body.update(ts=float(fields["ts"]), details=json.loads(fields["details"]))
        fields["hash"] = compute_hash(fields["prev"], body)


def rewrite(client: redis.Redis, keys: Keys, entries: list[tuple[str, Fields]]) -> None:
    """Replace the stream by `entries` under their ids, and the head by the last hash."""
    client.delete(keys.audit, keys.audit_head)
    for entry_id, fields in entries:
        client.xadd(keys.audit, cast(dict[Any, Any], fields), id=entry_id)
    if entries:
        client.set(keys.audit_head, entries[-1][1]["hash"])


def broken(verdict: AuditVerdict) -> str:
    assert not verdict.ok, verdict
    assert verdict.problem is not None
    return verdict.problem


def test_an_untouched_chain_verifies_and_names_its_witnessed_entry(
    audit: AuditLog, verifier: Verifier
) -> None:
    ids = fill(audit)
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
    assert verdict.witness_id == ids[-1]
    assert all(e.sig and e.sig.startswith(verifier.key_id + ":") for e in audit.read())


def test_a_deleted_stream_and_head_are_named(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit)
    redis_client.delete(keys.audit, keys.audit_head)
    problem = broken(audit.verify(verifier))
    assert f"the chain ends before entry {ids[-1]}" in problem and "deleted" in problem


def test_a_deleted_stream_stays_named_after_the_orchestrator_appends_to_a_new_one(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit)
    redis_client.delete(keys.audit, keys.audit_head)
    # Any request (even an anonymous, denied one) makes the orchestrator append: its witness
    # must not move onto a chain that lost the entry it witnessed.
    audit.append("anonymous", "access.denied", "/devices", "denied")
    # The new stream may even reuse the deleted entry's id: named as missing or rewritten.
    assert f"entry {ids[-1]}" in broken(audit.verify(verifier))


def test_a_deleted_stream_whose_head_was_kept_stays_named_after_new_appends(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit)
    redis_client.delete(keys.audit)  # the head still names the witnessed entry
    entry = audit.append("anonymous", "access.denied", "/devices", "denied")
    # The new entry's signed hash binds the deleted one as its prev: the gap stays visible.
    verdict = audit.verify(verifier)
    assert "oldest entry does not start the chain" in broken(verdict)
    assert verdict.entry_id == entry.id


def test_a_restarted_orchestrator_does_not_witness_a_chain_that_lost_the_entry(
    audit: AuditLog, signer: Signer, verifier: Verifier, redis_client: redis.Redis, keys: Keys,
    witness_dir: Path,
) -> None:
    ids = fill(audit)
    redis_client.delete(keys.audit, keys.audit_head)
    # A new process knows nothing but the witness file, which it checks after its append.
    restarted = AuditLog(redis_client, keys, signer,
                         witness=HeadWitness.for_prefix(witness_dir, keys.prefix))
    restarted.append("anonymous", "access.denied", "/devices", "denied")
    assert f"entry {ids[-1]}" in broken(restarted.verify(verifier))
    restarted.close()


def test_newest_entries_removed_with_the_head_fixed_are_named(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit)
    entries = stored(redis_client, keys)
    redis_client.xdel(keys.audit, *ids[-2:])
    redis_client.set(keys.audit_head, entries[-3][1]["hash"])
    verdict = audit.verify(verifier)
    assert f"the chain ends before entry {ids[-1]}" in broken(verdict)


def test_an_edited_entry_with_every_later_hash_recomputed_is_named_at_its_signature(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit)
    entries = stored(redis_client, keys)
    entries[1][1]["decision"] = "denied"
    rehash(entries, 1)
    rewrite(redis_client, keys, entries)
    verdict = audit.verify(verifier)
    assert "signature does not verify" in broken(verdict) and "rechained" in broken(verdict)
    assert verdict.entry_id == entries[1][0]


def test_an_edited_agent_entry_rechained_is_named_at_the_next_signed_entry(
    audit: AuditLog, agent: AuditChain, verifier: Verifier, redis_client: redis.Redis,
    keys: Keys,
) -> None:
    audit.append("alice", "command.requested", "dev1", "allowed")
    agent.append("agent:dev1", "agent.rejected", "c1", "rejected", reason="bad_signature")
    audit.append("alice", "command.requested", "dev1", "allowed")
    entries = stored(redis_client, keys)
    entries[1][1]["details"] = json.dumps({"reason": "expired"}, separators=(",", ":"))
    rehash(entries, 1)
    rewrite(redis_client, keys, entries)
    verdict = audit.verify(verifier)
    assert "signature does not verify" in broken(verdict)
    assert verdict.entry_id == entries[2][0]


def test_a_rechain_posing_as_agents_without_signatures_is_named(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit, 3)
    entries = stored(redis_client, keys)
    entries[1][1]["decision"] = "denied"
    for _, fields in entries[1:]:  # unsigned, and written as agents: no signature to fail
        fields.pop("sig")
        fields["actor"] = "agent:dev1"
    rehash(entries, 1)
    rewrite(redis_client, keys, entries)
    verdict = audit.verify(verifier)
    assert "not the entry this orchestrator wrote" in broken(verdict)
    assert verdict.entry_id == entries[-1][0]


def test_a_signature_removed_from_an_orchestrator_entry_is_named(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit, 3)
    entries = stored(redis_client, keys)
    entries[1][1].pop("sig")
    rewrite(redis_client, keys, entries)
    verdict = audit.verify(verifier)
    assert "unsigned, yet its actor 'alice' is not an agent" in broken(verdict)
    assert verdict.entry_id == entries[1][0]


def test_an_agent_entry_appended_without_a_key_verifies(
    audit: AuditLog, agent: AuditChain, verifier: Verifier
) -> None:
    fill(audit, 2)
    entry = agent.append("agent:dev1", "agent.rejected", "c1", "rejected", reason="unsigned")
    assert entry.sig is None
    fill(audit, 1)
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
    assert verdict.entries == 4


def test_a_forged_unsigned_entry_with_an_orchestrator_actor_is_named(
    audit: AuditLog, agent: AuditChain, verifier: Verifier
) -> None:
    fill(audit, 2)
    # Appended as the append script allows anyone with Redis to: chained, but unsigned.
    forged = agent.append("admin", "policy.set", "policy", "allowed")
    verdict = audit.verify(verifier)
    assert "unsigned, yet its actor 'admin' is not an agent" in broken(verdict)
    assert verdict.entry_id == forged.id


def test_an_entry_signed_by_another_key_is_named(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    from tasks.signing import generate_keypair

    fill(audit, 2)
    intruder = Signer.from_file(generate_keypair(tmp_path / "intruder").private_path)
    forged = AuditChain(redis_client, keys, intruder).append("admin", "user.add", "x", "allowed")
    verdict = audit.verify(verifier)
    assert f"signed by key {intruder.key_id!r}, not by a key given" in broken(verdict)
    assert verdict.entry_id == forged.id


def test_the_pipelined_append_is_signed_and_witnessed(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys,
    witness_dir: Path,
) -> None:
    fill(audit, 1)
    pipe = redis_client.pipeline(transaction=False)
    pipe.hset(keys.command("c1"), "status", "queued")
    finish = audit.stage(pipe, "alice", "command.requested", "dev1", "allowed", command_id="c1")
    entry = finish(pipe.execute()[-1])
    assert entry.sig is not None and entry.sig.startswith(verifier.key_id + ":")
    assert HeadWitness.for_prefix(witness_dir, keys.prefix).read() == WitnessMark(
        entry.id, entry.hash)
    assert audit.verify(verifier).ok


def test_the_witness_never_moves_back(witness_dir: Path) -> None:
    first, second = HeadWitness(witness_dir / "w"), HeadWitness(witness_dir / "w")
    newer = WitnessMark("1700000000002-0", "b" * 64)
    first.advance(newer)
    second.advance(WitnessMark("1700000000001-5", "a" * 64))  # an older append, finished late
    assert first.read() == second.read() == newer
    first.close()
    second.close()


def test_an_unreadable_witness_is_named_and_the_next_append_replaces_it(
    audit: AuditLog, verifier: Verifier, witness_dir: Path, keys: Keys
) -> None:
    fill(audit, 2)
    path = HeadWitness.for_prefix(witness_dir, keys.prefix).path
    path.write_bytes(b'{"format":"liveresponse-audit-wit')  # a record torn by a crash
    assert "witness" in broken(audit.verify(verifier)) and "unreadable" in broken(
        audit.verify(verifier))
    entry = audit.append("alice", "command.requested", "dev1", "allowed")
    verdict = audit.verify(verifier)
    assert verdict.ok and verdict.witness_id == entry.id


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    current = [100.0]
    monkeypatch.setattr(clock, "now", lambda: current[0])
    yield current


def trimmed_past_the_witness(audit: AuditLog, agent: AuditChain, signer: Signer,
                             fake_time: list[float]) -> None:
    """Orchestrator entries, then agent entries (the witness stays on the last orchestrator
    one), then a trim that removes the witnessed entry under a signed checkpoint."""
    for i in range(3):
        fake_time[0] = 100.0 + i
        audit.append("alice", "command.requested", "dev1", "allowed", n=i)
    for i in range(2):
        fake_time[0] = 110.0 + i
        agent.append("agent:dev1", "agent.rejected", f"c{i}", "rejected", reason="expired")
    fake_time[0] = 200.0
    assert trim_audit(audit, signer, actor="root", before=111.0).removed == 4


def test_a_trim_that_removes_the_witnessed_entry_keeps_the_chain_verifiable(
    audit: AuditLog, agent: AuditChain, signer: Signer, verifier: Verifier,
    fake_time: list[float],
) -> None:
    trimmed_past_the_witness(audit, agent, signer, fake_time)
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
    assert verdict.trimmed == 4 and verdict.witness_id == audit.read()[-1].id  # audit.trimmed
    audit.append("alice", "command.requested", "dev1", "allowed")
    assert audit.verify(verifier).ok


def test_a_checkpoint_deleted_after_a_trim_past_the_witness_is_named(
    audit: AuditLog, agent: AuditChain, signer: Signer, verifier: Verifier,
    fake_time: list[float], redis_client: redis.Redis, keys: Keys,
) -> None:
    trimmed_past_the_witness(audit, agent, signer, fake_time)
    redis_client.delete(keys.audit_checkpoint)
    assert "this orchestrator saw it trimmed up to entry" in broken(audit.verify(verifier))


def test_an_older_checkpoint_put_back_is_named(
    audit: AuditLog, agent: AuditChain, signer: Signer, verifier: Verifier,
    fake_time: list[float], redis_client: redis.Redis, keys: Keys,
) -> None:
    trimmed_past_the_witness(audit, agent, signer, fake_time)
    older = redis_client.get(keys.audit_checkpoint)
    fake_time[0] = 300.0
    audit.append("alice", "command.requested", "dev1", "allowed")
    fake_time[0] = 301.0
    agent.append("agent:dev1", "agent.rejected", "c9", "rejected", reason="expired")
    fake_time[0] = 400.0
    trim_audit(audit, signer, actor="root", before=350.0)  # removes the witnessed entry again
    assert audit.verify(verifier).ok
    redis_client.set(keys.audit_checkpoint, cast(bytes, older))
    assert "an older checkpoint was put back" in broken(audit.verify(verifier))


def test_a_stream_deleted_but_its_checkpoint_kept_stays_named_after_new_appends(
    audit: AuditLog, agent: AuditChain, signer: Signer, verifier: Verifier,
    fake_time: list[float], redis_client: redis.Redis, keys: Keys,
) -> None:
    trimmed_past_the_witness(audit, agent, signer, fake_time)
    redis_client.delete(keys.audit, keys.audit_head)
    audit.append("anonymous", "access.denied", "/devices", "denied")
    assert not audit.verify(verifier).ok
    redis_client.delete(keys.audit_checkpoint)  # and then the checkpoint too
    audit.append("anonymous", "access.denied", "/devices", "denied")
    assert not audit.verify(verifier).ok
