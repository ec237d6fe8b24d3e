"""A long chain is checked in parallel segments joined at their ends: the same tampering is
named with the same verdict (problem, entry, count) as one sequential pass, wherever it falls."""

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


def forge_mac(client: redis.Redis, keys: Keys, entries: list[tuple[str, Fields]]) -> None:
    entries[CHAIN // 4][1]["mac"] = entries[CHAIN // 4 + 1][1]["mac"]
    rewrite(client, keys, entries)


@pytest.mark.parametrize("attack", [edit_in_middle, rechain_from_middle, delete_in_middle,
                                    swap_late_pair, drop_newest_and_fix_head, forge_mac])
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
        f"entry {entries[CHAIN // 4][0]}: its MAC does not verify, its signature does (altered)")
