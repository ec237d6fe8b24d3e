"""The verifier's hash of an entry from its stored text is the appender's hash of the parsed
entry, for any text the appender stores; and the MAC key is the same in every process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.auditchain import check_details, compute_hash, mac_key_of, stored_entry_hash
from tasks.signing import Signer, generate_keypair


@pytest.mark.parametrize("actor, details, ts", [
    ("alice", {"command_id": "c1", "n": 3}, 1764064712.3411),
    ('é😀\x00"\\/\n\u2028', {"z": [1, 2.5, None, True], "a": {"b": "é\"x"}}, 5.0),
    ("agent:dev1", {}, 1e-07),
])
def test_the_hash_from_stored_text_equals_the_hash_of_the_parsed_entry(
    actor: str, details: dict[str, object], ts: float
) -> None:
    body = {"ts": ts, "actor": actor, "action": "command.requested", "target": "dev 1",
            "decision": "allowed", "details": details, "prev": "0" * 64}
    stored = {**body, "ts": repr(ts), "details": check_details(details)}
    assert stored_entry_hash(stored) == compute_hash("0" * 64, body)  # type: ignore[arg-type]


def test_the_mac_key_is_derived_alike_from_the_same_key_and_differs_for_another(
    tmp_path: Path,
) -> None:
    pair = generate_keypair(tmp_path / "a")
    one, again = Signer.from_file(pair.private_path), Signer.from_file(pair.private_path)
    other = Signer.from_file(generate_keypair(tmp_path / "b").private_path)
    assert mac_key_of(one) == mac_key_of(again) != mac_key_of(other)
