"""A long chain is checked in parallel segments joined at their ends: the same tampering is
named with the same verdict (problem, entry, count) as one sequential pass, wherever it falls.
Entries staged together are signed once per run, by its last entry: a run cut short, or
entries slipped in before one, are named too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.audit.log import AuditLog, AuditVerdict
from orchestrator.audit.segments import SEGMENTS_PER_WORKER, plan_segments
from orchestrator.audit.witness import HeadWitness
from tasks.auditchain import AuditChain
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer
from tests.security.test_audit_tamper import Fields, rehash, rewrite, stored

pytestmark = pytest.mark.integration

#: Entries of the chain: enough for every segment to hold some.
CHAIN = 200
WORKERS = 2

Attack = Callable[[redis.Redis, Keys, list[tuple[str, Fields]]], None]


@pytest.fixture
def audit(redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair,
          tmp_path: Path) -> Iterator[AuditLog]:
    """A chain of CHAIN signed entries with an agent's entry every 25, its newest witnessed."""
    log = AuditLog(redis_client, keys, Signer.from_file(signing_keys.private_path),
                   witness=HeadWitness.for_prefix(tmp_path / "witness", keys.prefix))
    agent = AuditChain(redis_client, keys)
    for start in range(0, CHAIN, 25):
        pipe = redis_client.pipeline(transaction=False)
        finish = log.stage_many(pipe, [
            ("alice", "command.requested", "dev1", "allowed", {"command_id": f"c{i}"})
            for i in range(start, start + 24)])
        finish(pipe.execute())
        agent.append("agent:dev1", "agent.rejected", f"c{start}", "rejected", reason="expired")
    log.append("alice", "session.closed", "dev1", "allowed")  # the witnessed newest entry
    yield log
    log.close()


def both(audit: AuditLog) -> tuple[AuditVerdict, AuditVerdict]:
    """(one sequential pass, parallel segments) over the same stream."""
    return audit.verify(workers=1), audit.verify(workers=WORKERS, parallel_from=1)


def test_an_untouched_chain_checked_in_segments_verifies_like_one_pass(
    audit: AuditLog, redis_client: redis.Redis, keys: Keys
) -> None:
    newest = stored(redis_client, keys)[-1][0]
    segments = plan_segments(redis_client, keys.audit, None, newest,
                             WORKERS * SEGMENTS_PER_WORKER)
    filled = [s for s in segments if redis_client.xrange(
        keys.audit, min="(" + s[0] if s[0] else "-", max=s[1], count=1)]
    assert len(filled) > 2, segments  # the joins are really exercised
    sequential, parallel = both(audit)
    assert sequential.ok and parallel == sequential
    assert parallel.entries == CHAIN + 1


def edit_in_middle(client: redis.Redis, keys: Keys, entries: list[tuple[str, Fields]]) -> None:
    entries[CHAIN // 2][1]["decision"] = "denied"
    rewrite(client, keys, entries)


def rechain_from_middle(client: redis.Redis, keys: Keys,
                        entries: list[tuple[str, Fields]]) -> None:
    entries[CHAIN // 2][1]["decision"] = "denied"
    rehash(entries, CHAIN // 2)
    rewrite(client, keys, entries)


def delete_in_middle(client: redis.Redis, keys: Keys, entries: list[tuple[str, Fields]]) -> None:
    client.xdel(keys.audit, entries[CHAIN // 3][0])


def swap_late_pair(client: redis.Redis, keys: Keys, entries: list[tuple[str, Fields]]) -> None:
    i = CHAIN - 30  # each id keeps its place, the contents trade places
    (a, first), (b, second) = entries[i], entries[i + 1]
    entries[i], entries[i + 1] = (a, second), (b, first)
    rewrite(client, keys, entries)


def drop_newest_and_fix_head(client: redis.Redis, keys: Keys,
                             entries: list[tuple[str, Fields]]) -> None:
    rewrite(client, keys, entries[:-3])


#: The last entry of the first run: the one that signs it.
RUN_SIGNER = 23


def forge_mac(client: redis.Redis, keys: Keys, entries: list[tuple[str, Fields]]) -> None:
    entries[RUN_SIGNER][1]["mac"] = entries[RUN_SIGNER + 2][1]["mac"]
    rewrite(client, keys, entries)


def drop_a_runs_signer(client: redis.Redis, keys: Keys,
                       entries: list[tuple[str, Fields]]) -> None:
    """Remove the last entry of a run and rechain: what it signed for is signed by nothing."""
    del entries[RUN_SIGNER]
    rehash(entries, RUN_SIGNER)
    rewrite(client, keys, entries)


@pytest.mark.parametrize("attack", [edit_in_middle, rechain_from_middle, delete_in_middle,
                                    swap_late_pair, drop_newest_and_fix_head, forge_mac,
                                    drop_a_runs_signer])
def test_tampering_in_any_segment_is_named_as_one_pass_names_it(
    audit: AuditLog, redis_client: redis.Redis, keys: Keys, attack: Attack
) -> None:
    attack(redis_client, keys, stored(redis_client, keys))
    sequential, parallel = both(audit)
    assert not sequential.ok
    assert parallel == sequential


def test_an_altered_mac_is_named_even_though_the_signature_holds(
    audit: AuditLog, redis_client: redis.Redis, keys: Keys
) -> None:
    entries = stored(redis_client, keys)
    forge_mac(redis_client, keys, entries)
    verdict = audit.verify(workers=1)
    assert verdict.problem == (
        f"entry {entries[RUN_SIGNER][0]}: its MAC does not verify, its signature does (altered)")


def test_a_run_signs_for_its_own_entries_only(
    audit: AuditLog, redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair
) -> None:
    """An intruder appends an entry marked as part of a run; the orchestrator's next run
    chains onto it, but its signature names how many entries it signs for."""
    entries = stored(redis_client, keys)
    key_id = entries[0][1]["sig"].split(":")[0]
    AuditChain(redis_client, keys).append("alice", "command.requested", "dev9", "allowed")
    entries = stored(redis_client, keys)
    entries[-1][1]["sig"] = f"{key_id}:~"  # outside the hash: no need to recompute it
    rewrite(redis_client, keys, entries)
    pipe = redis_client.pipeline(transaction=False)
    finish = audit.stage_many(pipe, [("alice", "command.requested", "dev1", "allowed", {})] * 3)
    run = finish(pipe.execute())
    sequential, parallel = both(audit)
    assert sequential.problem == (
        f"entry {run[-1].id}: its signature covers the 2 entries of its run before it, but 3 "
        "precede it (entries added to or removed from a run)")
    assert parallel == sequential

