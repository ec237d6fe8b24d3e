"""Ed25519 envelope signatures: round trip, every canonical field bound, key files checked."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

from tasks.envelope import CommandEnvelope
from tasks.errors import ConfigurationError, SignatureError, UsageError
from tasks.signing import KeyPair, Signer, Verifier, generate_keypair
from tests.privilege import run_as_nobody


@pytest.fixture
def pair(tmp_path: Path) -> KeyPair:
    return generate_keypair(tmp_path / "keys")


@pytest.fixture
def signer(pair: KeyPair) -> Signer:
    return Signer.from_file(pair.private_path)


@pytest.fixture
def verifier(pair: KeyPair) -> Verifier:
    return Verifier.from_file(pair.public_path)


def envelope() -> CommandEnvelope:
    return CommandEnvelope(
        command_id="c1", device_id="web01", session_id="S1", user="alice", command="kill",
        args={"pid": 4242}, cwd="/srv", issued_at=1000.5, expires_at=1030.5,
    )


#: A different value for every field the signature must cover.
TAMPERED: dict[str, Any] = {
    "command_id": "c2",
    "device_id": "web02",
    "session_id": "S2",
    "user": "mallory",
    "command": "dir",
    "args": {"pid": 1},
    "cwd": "/",
    "issued_at": 1000.25,
    "expires_at": 99999.0,
    "key_id": "0" * 16,
}


def test_every_field_but_the_signature_is_covered() -> None:
    covered = set(CommandEnvelope.model_fields) - {"signature"}
    assert covered == set(TAMPERED)


def test_a_signed_envelope_verifies_and_names_its_key(signer: Signer, verifier: Verifier) -> None:
    signed = signer.sign(envelope())
    assert signed.key_id == signer.key_id == verifier.key_id
    assert signed.signature
    verifier.verify(signed)
    assert envelope().signature is None  # signing returns a copy


def test_a_signature_survives_the_json_trip_to_the_agent(
    signer: Signer, verifier: Verifier
) -> None:
    signed = signer.sign(envelope())
    verifier.verify(CommandEnvelope.model_validate_json(signed.model_dump_json()))


@pytest.mark.parametrize("field", sorted(TAMPERED))
def test_changing_any_field_after_signing_is_caught(
    signer: Signer, verifier: Verifier, field: str
) -> None:
    forged = signer.sign(envelope()).model_copy(update={field: TAMPERED[field]})
    with pytest.raises(SignatureError) as caught:
        verifier.verify(forged)
    expected = "unknown_key" if field == "key_id" else "bad_signature"
    assert caught.value.code == expected


def test_an_unsigned_envelope_is_refused(verifier: Verifier) -> None:
    with pytest.raises(SignatureError) as caught:
        verifier.verify(envelope())
    assert caught.value.code == "unsigned"


def test_another_key_is_refused_naming_both_key_ids(
    tmp_path: Path, verifier: Verifier
) -> None:
    other = Signer.from_file(generate_keypair(tmp_path / "other").private_path)
    with pytest.raises(SignatureError) as caught:
        verifier.verify(other.sign(envelope()))
    assert caught.value.code == "unknown_key"
    assert other.key_id in caught.value.message and verifier.key_id in caught.value.message


def test_another_key_claiming_our_key_id_is_refused(
    tmp_path: Path, verifier: Verifier
) -> None:
    other = Signer.from_file(generate_keypair(tmp_path / "other").private_path)
    claimed = envelope().model_copy(update={"key_id": verifier.key_id})
    signature = other.sign_bytes(claimed.canonical_bytes())
    with pytest.raises(SignatureError) as caught:
        verifier.verify(claimed.model_copy(update={"signature": signature}))
    assert caught.value.code == "bad_signature"


@pytest.mark.parametrize("garbage", ["not base64!", "AAAA", ""])
def test_a_garbage_signature_is_refused(
    signer: Signer, verifier: Verifier, garbage: str
) -> None:
    forged = signer.sign(envelope()).model_copy(update={"signature": garbage})
    with pytest.raises(SignatureError) as caught:
        verifier.verify(forged)
    assert caught.value.code == ("unsigned" if not garbage else "bad_signature")


def test_signed_bytes_verify_and_changed_bytes_do_not(
    signer: Signer, verifier: Verifier
) -> None:
    signature = signer.sign_bytes(b"checkpoint 42")
    assert verifier.verify_bytes(b"checkpoint 42", signature)
    assert not verifier.verify_bytes(b"checkpoint 43", signature)
    assert not verifier.verify_bytes(b"checkpoint 42", "%%%")


def test_a_signer_checks_its_own_signatures(signer: Signer) -> None:
    own = signer.verifier()
    assert own.key_id == signer.key_id
    own.verify(signer.sign(envelope()))
    assert own.verify_bytes(b"x", signer.sign_bytes(b"x"))


def test_the_key_id_is_the_start_of_sha256_of_the_raw_public_key(pair: KeyPair) -> None:
    public = serialization.load_pem_public_key(pair.public_path.read_bytes())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert pair.key_id == hashlib.sha256(raw).hexdigest()[:16]


def test_key_files_get_private_modes(tmp_path: Path) -> None:
    directory = tmp_path / "fresh" / "keys"
    old = os.umask(0)  # the modes must not depend on a permissive umask
    try:
        pair = generate_keypair(directory)
    finally:
        os.umask(old)
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pair.public_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in pair.private_path.read_bytes()
    assert b"PUBLIC KEY" in pair.public_path.read_bytes()
    assert sorted(p.name for p in directory.iterdir()) == [
        "orchestrator-signing.key", "orchestrator-signing.pub"]


def test_existing_keys_are_kept_unless_overwrite(pair: KeyPair) -> None:
    before = pair.private_path.read_bytes()
    with pytest.raises(UsageError) as caught:
        generate_keypair(pair.private_path.parent)
    assert str(pair.private_path) in caught.value.message
    assert "--force" in (caught.value.hint or "")
    assert pair.private_path.read_bytes() == before
    fresh = generate_keypair(pair.private_path.parent, overwrite=True)
    assert fresh.key_id != pair.key_id
    assert Signer.from_file(fresh.private_path).key_id == fresh.key_id


def test_a_missing_key_file_says_which_and_what_to_run(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    for load in (Signer.from_file, Verifier.from_file):
        with pytest.raises(ConfigurationError) as caught:
            load(missing)
        assert str(missing) in caught.value.message
        assert "lr admin keys init" in (caught.value.hint or "")


def test_a_malformed_key_file_is_a_configuration_error(tmp_path: Path, pair: KeyPair) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n")
    for load in (Signer.from_file, Verifier.from_file):
        with pytest.raises(ConfigurationError) as caught:
            load(junk)
        assert str(junk) in caught.value.message
    # Each side's file in the other's place is refused too.
    with pytest.raises(ConfigurationError):
        Signer.from_file(pair.public_path)
    with pytest.raises(ConfigurationError):
        Verifier.from_file(pair.private_path)


def test_a_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    ed448 = Ed448PrivateKey.generate()
    private = tmp_path / "ed448.key"
    private.write_bytes(ed448.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    public = tmp_path / "ed448.pub"
    public.write_bytes(ed448.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigurationError, match="not an Ed25519 key"):
        Signer.from_file(private)
    with pytest.raises(ConfigurationError, match="not an Ed25519 key"):
        Verifier.from_file(public)


def test_an_unreadable_key_file_is_a_configuration_error(pair: KeyPair) -> None:
    # Root reads anything: the check runs as nobody, who may not read the 0600 key.
    pair.private_path.parent.chmod(0o755)

    def load() -> str:
        try:
            Signer.from_file(pair.private_path)
        except ConfigurationError as exc:
            return exc.message
        return "loaded"

    message = run_as_nobody(load)
    assert message.startswith(f"cannot read the orchestrator's signing key {pair.private_path}")
