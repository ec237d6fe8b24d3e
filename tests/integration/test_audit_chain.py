"""The audit stream against a real Redis: append, filters, and every kind of tampering found."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import redis

from orchestrator.audit.log import GENESIS, AuditLog, AuditVerdict, compute_hash, digest
from orchestrator.audit.witness import HeadWitness
from tasks import clock
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, Verifier

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

pytestmark = pytest.mark.integration

WRITERS = 2
ENTRIES_PER_WRITER = 300


@pytest.fixture
def audit(
    redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair, tmp_path: Path
) -> Iterator[AuditLog]:
    """The orchestrator's log: signed entries, the head witnessed in this test's directory."""
    log = AuditLog(redis_client, keys, Signer.from_file(signing_keys.private_path),
                   witness=HeadWitness.for_prefix(tmp_path / "witness", keys.prefix))
    yield log
    log.close()


@pytest.fixture
def verifier(signing_keys: KeyPair) -> Verifier:
    return Verifier.from_file(signing_keys.public_path)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """A clock the test moves by setting `fake_time[0]`."""
    current = [1_700_000_000.0]
    monkeypatch.setattr(clock, "now", lambda: current[0])
    yield current


def fill(audit: AuditLog, n: int = 5) -> list[str]:
    """Append `n` entries; return their stream ids."""
    return [
        audit.append(
            "alice",
            "command",
            "dev1",
            "allowed",
            session="S0000000a",
            device="dev1",
            command_id=f"c{i}",
            n=i,
        ).id
        for i in range(n)
    ]


def raw_entries(client: redis.Redis, keys: Keys) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.audit))


def problem_of(verdict: AuditVerdict) -> str:
    """The problem a failed verdict names (and that it failed at all)."""
    assert not verdict.ok and verdict.problem is not None
    return verdict.problem


def rebuild(
    client: redis.Redis, keys: Keys, entries: list[tuple[bytes, dict[bytes, bytes]]]
) -> None:
    """Replace the stream by `entries`, keeping their ids (what an attacker with Redis can do)."""
    client.delete(keys.audit)
    for entry_id, fields in entries:
        client.xadd(keys.audit, cast(dict[Any, Any], fields), id=entry_id)


def test_append_links_each_entry_to_the_one_before(
    audit: AuditLog, redis_client: redis.Redis, keys: Keys
) -> None:
    first = audit.append("alice", "session.open", "dev1", "allowed", session="S0000000a")
    second = audit.append("alice", "command", "dev1", "allowed", command_id="c1")
    assert first.prev == GENESIS
    assert second.prev == first.hash
    assert redis_client.get(keys.audit_head) == second.hash.encode()
    body = {
        "ts": second.ts,
        "actor": "alice",
        "action": "command",
        "target": "dev1",
        "decision": "allowed",
        "details": {"command_id": "c1"},
        "prev": first.hash,
    }
    assert compute_hash(first.hash, body) == second.hash


def test_read_filters_by_session_device_actor_command_and_time(
    audit: AuditLog, fake_time: list[float]
) -> None:
    fake_time[0] = 100.0
    audit.append(
        "alice", "command", "dev1", "allowed", session="S1", device="dev1", command_id="c1"
    )
    fake_time[0] = 200.0
    audit.append("bob", "command", "dev2", "denied", session="S2", device="dev2", command_id="c2")
    fake_time[0] = 300.0
    audit.append(
        "alice", "command", "dev2", "allowed", session="S3", device="dev2", command_id="c3"
    )

    def ids(entries: list) -> list[str]:
        return [e.details["command_id"] for e in entries]

    assert ids(audit.read()) == ["c1", "c2", "c3"]
    assert ids(audit.read(session="S2")) == ["c2"]
    assert ids(audit.read(device="dev2")) == ["c2", "c3"]
    assert ids(audit.read(actor="alice")) == ["c1", "c3"]
    assert ids(audit.read(command="c3")) == ["c3"]
    assert ids(audit.read(since=200.0)) == ["c2", "c3"]
    assert ids(audit.read(until=200.0)) == ["c1", "c2"]
    assert ids(audit.read(since=150.0, until=250.0)) == ["c2"]
    assert ids(audit.read(limit=2)) == ["c2", "c3"]
    assert ids(audit.read(actor="alice", device="dev1")) == ["c1"]
    assert audit.read(actor="nobody") == []


def test_verify_accepts_an_untouched_chain(audit: AuditLog, verifier: Verifier) -> None:
    assert audit.verify(verifier).ok and audit.verify(verifier).entries == 0
    fill(audit, 5)
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
    assert verdict.entries == 5
    assert verdict.problem is None


def test_verify_names_prev_mismatch_when_a_middle_entry_is_deleted(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, 5)
    redis_client.xdel(keys.audit, ids[2])
    verdict = audit.verify(verifier)
    assert not verdict.ok
    assert verdict.entry_id == ids[3]
    assert "prev mismatch" in problem_of(verdict)


def test_verify_fails_when_the_oldest_entry_is_deleted(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, 3)
    redis_client.xdel(keys.audit, ids[0])
    verdict = audit.verify(verifier)
    assert not verdict.ok
    assert verdict.entry_id == ids[1]
    assert "prev mismatch" in problem_of(verdict)


def test_verify_fails_when_the_newest_entry_is_deleted(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, 4)
    redis_client.xdel(keys.audit, ids[-1])
    verdict = audit.verify(verifier)
    assert not verdict.ok
    assert verdict.entry_id == ids[-2]
    assert "head" in problem_of(verdict)


def test_verify_fails_when_the_head_is_replaced_or_deleted(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit, 3)
    redis_client.set(keys.audit_head, "f" * 64)
    assert "head" in problem_of(audit.verify(verifier))
    redis_client.delete(keys.audit_head)
    assert "head" in problem_of(audit.verify(verifier))


def test_verify_fails_when_every_entry_is_deleted(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit, 3)
    redis_client.delete(keys.audit)
    verdict = audit.verify(verifier)
    assert not verdict.ok
    assert "every entry was deleted" in problem_of(verdict)


def test_verify_names_hash_when_an_entry_is_rewritten(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit, 4)
    entries = raw_entries(redis_client, keys)
    entry_id, fields = entries[1]
    entries[1] = (entry_id, {**fields, b"decision": b"denied"})
    rebuild(redis_client, keys, entries)
    verdict = audit.verify(verifier)
    assert not verdict.ok
    assert verdict.entry_id == entry_id.decode()
    assert "hash does not match its content (altered)" in problem_of(verdict)


def test_verify_names_hash_when_details_are_rewritten(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit, 3)
    entries = raw_entries(redis_client, keys)
    entry_id, fields = entries[0]
    entries[0] = (entry_id, {**fields, b"details": fields[b"details"].replace(b"c0", b"c9")})
    rebuild(redis_client, keys, entries)
    verdict = audit.verify(verifier)
    assert not verdict.ok and verdict.entry_id == entry_id.decode()
    assert "altered" in problem_of(verdict)


def test_verify_fails_when_entries_are_reordered(
    audit: AuditLog, verifier: Verifier, redis_client: redis.Redis, keys: Keys
) -> None:
    fill(audit, 4)
    entries = raw_entries(redis_client, keys)
    # Same ids in order, contents of entries 1 and 2 swapped: each hash still fits its content.
    swapped = [
        entries[0],
        (entries[1][0], entries[2][1]),
        (entries[2][0], entries[1][1]),
        entries[3],
    ]
    rebuild(redis_client, keys, swapped)
    verdict = audit.verify(verifier)
    assert not verdict.ok
    assert verdict.entry_id == entries[1][0].decode()
    assert "prev mismatch" in problem_of(verdict)


def test_secret_detail_keys_are_refused_and_nothing_is_written(
    audit: AuditLog, redis_client: redis.Redis, keys: Keys
) -> None:
    for details in (
        {"token": "lr_abc"},
        {"Password": "x"},
        {"args": {"secret": "x"}},
        {"items": [{"token": "x"}]},
        {"a": [{"b": ({"SeCrEt": 1},)}]},
        {"to\u212aen": "x"},  # KELVIN SIGN: lowercase "token"
        {"token": b"not JSON either"},
    ):
        with pytest.raises(ValueError, match="secrets never enter the audit stream"):
            audit.append("alice", "login", "api", "allowed", **details)
    assert redis_client.xlen(keys.audit) == 0
    assert redis_client.get(keys.audit_head) is None


def test_a_secret_key_name_inside_a_value_is_not_a_secret_key(audit: AuditLog) -> None:
    written = audit.append("alice", "login", "api", "allowed", note='{"token": 1}',
                           tokens=["password"], by_token="x")
    assert written.details == {"note": '{"token": 1}', "tokens": ["password"], "by_token": "x"}


def test_an_appended_entry_is_returned_as_it_reads_back(audit: AuditLog) -> None:
    for details in ({"command_id": "c1", "ratio": 0.1, "n": [1, None, True]},
                    {"name": "\ud800 lone surrogate", "é": "😀"}, {}):
        written = audit.append("ålice", "command.requested", "dev\n1", "allowed", **details)
        assert written == audit.read(limit=1)[0]
        assert written.details == details


def test_details_must_be_json(audit: AuditLog) -> None:
    with pytest.raises(ValueError, match="plain JSON"):
        audit.append("alice", "x", "y", "allowed", blob=b"bytes")
    with pytest.raises(ValueError):
        audit.append("alice", "x", "y", "allowed", ratio=float("nan"))


def test_digest_is_sha256_of_the_bytes() -> None:
    assert digest(b"abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert digest("abc") == digest(b"abc")


def append_many(
    url: str, prefix: str, writer: int, start: Event, key_file: Path, witness_dir: Path
) -> None:
    """One writer process: its own client, ENTRIES_PER_WRITER appends as fast as it can,
    sharing the witness file of the orchestrator's host."""
    log = AuditLog(redis.Redis.from_url(url), Keys(prefix), Signer.from_file(key_file),
                   witness=HeadWitness.for_prefix(witness_dir, prefix))
    start.wait(30)
    for i in range(ENTRIES_PER_WRITER):
        log.append(f"writer{writer}", "command", "dev1", "allowed", n=i)


def test_two_processes_appending_at_once_never_fork_the_chain_nor_move_the_witness_back(
    audit: AuditLog, verifier: Verifier, redis_url: str, key_prefix: str,
    signing_keys: KeyPair, tmp_path: Path, redis_client: redis.Redis, keys: Keys,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=append_many, args=(redis_url, key_prefix, w, start,
                                              signing_keys.private_path, tmp_path / "witness"))
        for w in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    verdict = audit.verify(verifier)
    assert verdict.ok, verdict.problem
    assert verdict.entries == WRITERS * ENTRIES_PER_WRITER
    newest = cast(list[tuple[bytes, Any]], redis_client.xrevrange(keys.audit, count=1))
    assert verdict.witness_id == newest[0][0].decode()  # the newest of both writers
    per_writer = [len(audit.read(actor=f"writer{w}")) for w in range(WRITERS)]
    assert per_writer == [ENTRIES_PER_WRITER] * WRITERS
