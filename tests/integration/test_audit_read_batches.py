"""The audit stream is read in XRANGE batches, the next asked for before one is handed on: a
reading left part-way leaves no answer behind on the connection for the next reading."""

from __future__ import annotations

import pytest
import redis

from orchestrator.audit import segments
from orchestrator.audit.segments import raw_reader, read_batches
from tasks.auditchain import AuditChain
from tasks.keys import Keys

pytestmark = pytest.mark.integration


def ids_read(reader: redis.Redis, keys: Keys, after: str | None = None) -> list[str]:
    return [entry_id for batch in read_batches(reader, keys.audit, after, "+")
            for entry_id, _ in batch]


def test_a_reading_left_part_way_does_not_spoil_the_next(
    redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "READ_BATCH", 3)
    chain = AuditChain(redis_client, keys)
    ids = [chain.append("agent:dev1", "agent.rejected", "c1", "rejected", n=i).id
           for i in range(10)]
    reader = raw_reader(redis_client)
    try:
        assert ids_read(reader, keys) == ids  # batches of 3, 3, 3 and 1
        batches = read_batches(reader, keys.audit, None, "+")
        assert [entry_id for entry_id, _ in next(batches)] == ids[:3]
        batches.close()  # the second batch was asked for and is never read
        assert ids_read(reader, keys, after=ids[5]) == ids[6:]
        assert reader.xlen(keys.audit) == 10
    finally:
        reader.close()
