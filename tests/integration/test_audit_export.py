"""Audit export files on a real Redis and real files: each kind of tampering is found offline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.audit.export_file import EXPORT_FORMAT, export_lines, verify_file
from orchestrator.audit.log import AuditLog, AuditVerdict
from orchestrator.audit.witness import HeadWitness
from tasks.auditchain import compute_hash
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, Verifier

pytestmark = pytest.mark.integration

ENTRIES = 6

#: Loads the orchestrator's public key, as `lr audit verify --file` does.
Key = Callable[[], Verifier]


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
def key(signing_keys: KeyPair) -> Key:
    """What `verify_file` loads the orchestrator's public key with."""
    return lambda: Verifier.from_file(signing_keys.public_path)


@pytest.fixture
def exported(audit: AuditLog, tmp_path: Path) -> Path:
    """An export of a chain of ENTRIES entries, written to a real file."""
    for i in range(ENTRIES):
        audit.append("alice", "command.requested", "dev1", "allowed", command_id=f"c{i}", n=i)
    return write_export(audit, tmp_path / "audit.jsonl")


def write_export(audit: AuditLog, path: Path) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.writelines(export_lines(audit, audit.snapshot()))
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def entry_id_at(lines: list[str], number: int) -> str:
    return str(json.loads(lines[number - 1])["id"])


def broken(verdict: AuditVerdict) -> str:
    assert not verdict.ok, verdict
    assert verdict.problem is not None
    return verdict.problem


def test_export_of_an_untouched_chain_verifies_offline(
    audit: AuditLog, exported: Path, redis_client: redis.Redis, keys: Keys, key: Key,
) -> None:
    verdict = verify_file(exported, key)
    assert verdict.ok, verdict.problem
    assert verdict.entries == ENTRIES
    assert verdict.head == redis_client.get(keys.audit_head).decode()


def test_export_starts_with_a_header_then_one_stored_entry_per_line(
    audit: AuditLog, exported: Path
) -> None:
    header, *entries = [json.loads(line) for line in lines_of(exported)]
    assert header["type"] == "header" and header["format"] == EXPORT_FORMAT
    assert header["entries"] == ENTRIES and header["checkpoint"] is None
    stored = audit.read()
    assert [e["id"] for e in entries] == [e.id for e in stored]
    assert header["head"] == stored[-1].hash
    first = entries[0]
    assert first["type"] == "entry" and first["hash"] == stored[0].hash
    # ts and details exactly as stored: text, so the hash is recomputed byte for byte.
    assert json.loads(first["details"]) == {"command_id": "c0", "n": 0}
    assert float(first["ts"]) == stored[0].ts


def test_an_empty_chain_exports_and_verifies(audit: AuditLog, tmp_path: Path, key: Key) -> None:
    path = write_export(audit, tmp_path / "empty.jsonl")
    assert len(lines_of(path)) == 1
    verdict = verify_file(path, key)
    assert verdict.ok and verdict.entries == 0


def test_entries_appended_during_an_export_are_left_for_the_next(
    audit: AuditLog, exported: Path, tmp_path: Path, key: Key,
) -> None:
    lines = export_lines(audit, audit.snapshot())
    header = next(lines)
    audit.append("bob", "command.requested", "dev2", "allowed")
    path = tmp_path / "during.jsonl"
    path.write_text(header + "".join(lines), encoding="utf-8")
    verdict = verify_file(path, key)
    assert verdict.ok, verdict.problem
    assert verdict.entries == ENTRIES


def test_an_edited_field_is_reported_with_its_line_and_entry_id(exported: Path, key: Key) -> None:
    lines = lines_of(exported)
    entry = json.loads(lines[2])
    lines[2] = json.dumps({**entry, "decision": "denied"}) + "\n"
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "hash does not match its content" in broken(verdict)
    assert verdict.line == 3
    assert verdict.entry_id == entry["id"]


def test_edited_details_are_reported(exported: Path, key: Key) -> None:
    lines = lines_of(exported)
    lines[4] = lines[4].replace('\\"c3\\"', '\\"c9\\"')
    assert '\\"c9\\"' in lines[4]
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "altered" in broken(verdict) and verdict.line == 5


def test_a_deleted_line_is_reported_where_the_chain_breaks(exported: Path, key: Key) -> None:
    lines = lines_of(exported)
    del lines[3]
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "prev mismatch" in broken(verdict)
    assert verdict.line == 4
    assert verdict.entry_id == entry_id_at(lines, 4)


def test_two_swapped_lines_are_reported(exported: Path, key: Key) -> None:
    lines = lines_of(exported)
    lines[3], lines[4] = lines[4], lines[3]
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "prev mismatch" in broken(verdict)
    assert verdict.line == 4
    assert verdict.entry_id == entry_id_at(lines, 4)


def test_a_file_cut_after_a_whole_line_is_reported_truncated(exported: Path, key: Key) -> None:
    lines = lines_of(exported)[:-2]
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "truncated" in broken(verdict)
    assert f"after {ENTRIES - 2} of the {ENTRIES}" in broken(verdict)
    assert verdict.line == len(lines)
    assert verdict.entry_id == entry_id_at(lines, len(lines))


def test_a_file_cut_inside_a_line_is_reported_truncated(exported: Path, key: Key) -> None:
    data = exported.read_bytes()
    exported.write_bytes(data[: len(data) - 40])
    verdict = verify_file(exported, key)
    assert "cut off" in broken(verdict) and "truncated" in broken(verdict)
    assert verdict.line == ENTRIES + 1


def test_a_line_that_is_not_json_is_reported(exported: Path, key: Key) -> None:
    lines = lines_of(exported)
    lines[2] = "{this is not json\n"
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "not valid JSON" in broken(verdict) and verdict.line == 3


def test_an_added_entry_line_is_reported(exported: Path, key: Key) -> None:
    lines = lines_of(exported)
    lines.append(lines[-1])
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "more entries than" in broken(verdict) and verdict.line == len(lines)


def test_a_replaced_head_in_the_header_is_reported(exported: Path, key: Key) -> None:
    lines = lines_of(exported)
    header = json.loads(lines[0])
    lines[0] = json.dumps({**header, "head": "f" * 64}) + "\n"
    exported.write_text("".join(lines), encoding="utf-8")
    verdict = verify_file(exported, key)
    assert "header: signature does not verify" in broken(verdict) and verdict.line == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty"),
        ("not json\n", "not valid JSON"),
        ('{"type": "entry"}\n', "not an audit export header"),
        ('{"type": "header", "format": "other/9"}\n', "unknown format"),
    ],
)
def test_a_file_without_an_export_header_is_reported_at_line_1(
    tmp_path: Path, content: str, expected: str, key: Key,
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    verdict = verify_file(path, key)
    assert expected in broken(verdict) and verdict.line == 1


def test_an_export_of_a_stream_whose_head_was_deleted_does_not_verify(
    audit: AuditLog, exported: Path, redis_client: redis.Redis,
    keys: Keys, tmp_path: Path, key: Key,
) -> None:
    redis_client.delete(keys.audit_head)
    path = write_export(audit, tmp_path / "headless.jsonl")
    verdict = verify_file(path, key)
    assert "'head' is missing" in broken(verdict) and verdict.line == 1


def export_runs(audit: AuditLog, client: redis.Redis, path: Path) -> Path:
    """An export of a single entry, a staged run of five (signed once, by its last) and one
    more single entry."""
    audit.append("alice", "session.opened", "dev1", "allowed")
    pipe = client.pipeline(transaction=False)
    finish = audit.stage_many(pipe, [("alice", "command.requested", f"dev{i}", "allowed",
                                      {"command_id": f"c{i}"}) for i in range(5)])
    finish(pipe.execute())
    audit.append("alice", "session.closed", "dev1", "allowed")
    return write_export(audit, path)


def test_an_export_of_a_staged_run_verifies_offline_by_the_runs_signature(
    audit: AuditLog, redis_client: redis.Redis, tmp_path: Path, key: Key
) -> None:
    path = export_runs(audit, redis_client, tmp_path / "audit.jsonl")
    sigs = [json.loads(line)["sig"] for line in lines_of(path)[1:]]
    assert [s.endswith(":~") for s in sigs] == [False, True, True, True, True, False, False]
    assert sigs[5].endswith(":5")
    verdict = verify_file(path, key)
    assert verdict.ok, verdict.problem
    assert verdict.entries == 7


def test_an_entry_of_a_run_edited_and_rechained_is_named_at_the_runs_signature(
    audit: AuditLog, redis_client: redis.Redis, tmp_path: Path, key: Key
) -> None:
    path = export_runs(audit, redis_client, tmp_path / "audit.jsonl")
    lines = lines_of(path)
    entries = [json.loads(line) for line in lines[1:]]
    entries[2]["target"] = "dev-elsewhere"  # a member of the run: no signature of its own
    for i in range(2, len(entries)):
        fields = entries[i]
        fields["prev"] = entries[i - 1]["hash"]
        body = {k: fields[k] for k in ("actor", "action", "target", "decision", "prev")}
        body.update(ts=float(fields["ts"]), details=json.loads(fields["details"]))
        fields["hash"] = compute_hash(fields["prev"], body)
    path.write_text(lines[0] + "".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    verdict = verify_file(path, key)
    assert "signature does not verify" in broken(verdict)
    assert verdict.entry_id == entries[5]["id"]  # the run's last entry, which signs for it
