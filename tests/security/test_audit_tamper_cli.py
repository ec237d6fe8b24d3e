"""Tampering `lr audit verify` must name through the CLI (exit 12): the live stream attacked in
Redis, an export cut short with its header fixed, and keys rotated or forged."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from orchestrator.audit.export_file import export_lines, verify_file
from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.log import AuditLog
from orchestrator.audit.witness import HeadWitness
from orchestrator.cli.main import main
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, Verifier, generate_keypair
from tests.security.test_audit_tamper import rehash, rewrite, stored
from tests.stack import Stack

pytestmark = pytest.mark.integration

Lr = Callable[..., Result]
#: The exit code of a broken audit chain (AuditChainBrokenError).
BROKEN = 12


@pytest.fixture
def stack(stack_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """The API with no agent (the audit routes need none), stopped when the test ends."""
    with stack_factory([]) as st:
        for i in range(5):
            st.plane.audit.append("admin", "command.requested", "dev1", "allowed", n=i)
        yield st


@pytest.fixture
def lr(stack: Stack, tmp_path: Path) -> Lr:
    """`lr` against the stack as its admin, with none of the user's own settings."""
    env: dict[str, str | None] = {
        "LR_DATA_DIR": str(tmp_path / "lr-home"), "LR_API_URL": None, "LR_TOKEN": None,
        "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": None,
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--api-url", stack.url, "--token", stack.token, *args],
                                  env=env)

    return invoke


def delete_stream(client: redis.Redis, keys: Keys) -> None:
    client.delete(keys.audit, keys.audit_head)


def drop_newest(client: redis.Redis, keys: Keys) -> None:
    entries = stored(client, keys)
    client.xdel(keys.audit, entries[-1][0], entries[-2][0])
    client.set(keys.audit_head, entries[-3][1]["hash"])


def rechain_edit(client: redis.Redis, keys: Keys) -> None:
    entries = stored(client, keys)
    entries[2][1]["actor"] = "mallory"
    rehash(entries, 2)
    rewrite(client, keys, entries)


@pytest.mark.parametrize(
    ("attack", "named"),
    [
        (delete_stream, "the newest this orchestrator wrote"),
        (drop_newest, "the newest this orchestrator wrote"),
        (rechain_edit, "signature does not verify"),
    ],
    ids=["stream-and-head-deleted", "newest-dropped-head-fixed", "edited-and-rechained"],
)
def test_lr_audit_verify_exits_12_naming_the_attack(
    lr: Lr, stack: Stack, attack: Callable[[redis.Redis, Keys], None], named: str
) -> None:
    assert lr("audit", "verify").exit_code == 0
    attack(stack.plane.client, stack.plane.keys)
    result = lr("audit", "verify")
    assert result.exit_code == BROKEN, result.output
    assert "audit chain broken" in result.stderr and named in result.stderr


def export(lr: Lr, path: Path) -> list[dict[str, Any]]:
    result = lr("audit", "export", "--jsonl", str(path))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def test_an_export_cut_short_with_its_header_fixed_exits_12(
    lr: Lr, stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    header, *entries = export(lr, path)
    key = str(stack.signing.public_path)
    assert lr("audit", "verify", "--file", str(path), "--public-key", key).exit_code == 0
    kept = entries[:-2]
    header.update(entries=len(kept), head=kept[-1]["hash"], newest_id=kept[-1]["id"],
                  witness={**header["witness"], "id": kept[-1]["id"], "hash": kept[-1]["hash"]})
    write_lines(path, [header, *kept])
    result = lr("audit", "verify", "--file", str(path), "--public-key", key)
    assert result.exit_code == BROKEN, result.output
    assert "at line 1" in result.stderr and "header: signature does not verify" in result.stderr


def test_an_export_cut_short_with_the_header_kept_exits_12(
    lr: Lr, stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    header, *entries = export(lr, path)
    write_lines(path, [header, *entries[:-1]])
    result = lr("audit", "verify", "--file", str(path), "--public-key",
                str(stack.signing.public_path))
    assert result.exit_code == BROKEN and "truncated" in result.stderr


def test_an_export_taken_after_redis_was_truncated_does_not_verify(
    lr: Lr, stack: Stack, tmp_path: Path
) -> None:
    drop_newest(stack.plane.client, stack.plane.keys)
    path = tmp_path / "audit.jsonl"
    header, *_ = export(lr, path)  # the orchestrator signs what Redis holds, and its witness
    assert header["witness"] is not None
    result = lr("audit", "verify", "--file", str(path), "--public-key",
                str(stack.signing.public_path))
    assert result.exit_code == BROKEN, result.output
    assert "the newest this orchestrator wrote" in result.stderr


def test_an_export_signed_by_another_key_exits_12(
    lr: Lr, stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    export(lr, path)
    other = generate_keypair(tmp_path / "other").public_path
    result = lr("audit", "verify", "--file", str(path), "--public-key", str(other))
    assert result.exit_code == BROKEN and "not by a key given" in result.stderr


def test_verify_file_without_any_public_key_asks_for_one(
    lr: Lr, stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    export(lr, path)
    result = lr("audit", "verify", "--file", str(path))
    assert result.exit_code == 2, result.output
    assert "--public-key" in result.stderr


def test_an_unsigned_export_of_the_earlier_format_is_not_passed(
    lr: Lr, stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"type": "header", "format": "liveresponse-audit/1",
                                "exported_at": 1.0, "entries": 0, "head": "0" * 64,
                                "checkpoint": None}) + "\n", encoding="utf-8")
    result = lr("audit", "verify", "--file", str(path), "--public-key",
                str(stack.signing.public_path))
    assert result.exit_code == BROKEN and "an unsigned export" in result.stderr


def test_entries_of_a_rotated_key_verify_with_it_retired_and_it_signs_nothing_after(
    redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair, tmp_path: Path
) -> None:
    old = Signer.from_file(signing_keys.private_path)
    new = Signer.from_file(generate_keypair(tmp_path / "new").private_path)
    witness = HeadWitness.for_prefix(tmp_path / "witness", keys.prefix)
    AuditLog(redis_client, keys, old, witness=witness).append("alice", "x", "t", "allowed")
    AuditLog(redis_client, keys, new, witness=witness).append("alice", "y", "t", "allowed")
    log = AuditLog(redis_client, keys, witness=witness)
    both = TrustedKeys([new.verifier(), old.verifier()])
    assert log.verify(both).ok
    assert "not by a key given" in str(log.verify(new.verifier()).problem)
    late = AuditLog(redis_client, keys, old, witness=witness).append("bob", "z", "t", "allowed")
    verdict = log.verify(both)
    assert not verdict.ok and verdict.entry_id == late.id
    assert "a retired key signs nothing new" in str(verdict.problem)
    witness.close()


def test_keys_init_force_keeps_the_old_public_key_trusted_for_what_it_signed(
    redis_url: str, key_prefix: str, redis_client: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    home = tmp_path / "lr-home"
    env: dict[str, str | None] = {
        "LR_REDIS_URL": redis_url, "LR_KEY_PREFIX": key_prefix, "LR_DATA_DIR": str(home),
        "LR_SIGNING_KEY_FILE": None, "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": None,
        "LR_API_URL": None, "LR_TOKEN": None,
    }
    for argv in (["admin", "keys", "init"], ["admin", "keys", "init", "--force"]):
        result = CliRunner().invoke(main, ["--json", *argv], env=env)
        assert result.exit_code == 0, result.output
    (first, second) = [e for e in AuditLog(redis_client, keys).read() if e.action == "keys.created"]
    retired = home / "keys" / "retired" / f"{first.target}.pub"
    assert Verifier.from_file(retired).key_id == first.target
    # The old key, still in force when the new pair was made, signed the record of it.
    assert second.sig is not None and second.sig.startswith(first.target + ":")
    current = Verifier.from_file(home / "keys" / "orchestrator-signing.pub")
    assert current.key_id == second.target
    trusted = TrustedKeys.with_retired(current, home / "keys")
    assert AuditLog(redis_client, keys).verify(trusted).ok
    path = tmp_path / "chain.jsonl"
    log = AuditLog(redis_client, keys, Signer.from_file(home / "keys" / "orchestrator-signing.key"))
    path.write_text("".join(export_lines(log, log.snapshot())), encoding="utf-8")
    assert verify_file(path, lambda: trusted).ok
