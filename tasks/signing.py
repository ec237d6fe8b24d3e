"""Ed25519 signatures over command envelopes: the orchestrator signs, the agent verifies."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tasks.cancel import CancelOrder
from tasks.envelope import CommandEnvelope
from tasks.errors import ConfigurationError, SignatureError, UsageError

#: File name of the orchestrator's private signing key (PEM, PKCS8, mode 0600).
PRIVATE_KEY_NAME = "orchestrator-signing.key"
#: File name of its public key (PEM, SubjectPublicKeyInfo), handed to every agent.
PUBLIC_KEY_NAME = "orchestrator-signing.pub"
#: Hex characters of sha256(raw public key) that name a key.
KEY_ID_CHARS = 16
#: What to run when a key file is missing or unusable.
KEYS_HINT = "run `lr admin keys init` to create the orchestrator's signing keys"

#: What the orchestrator signs for agents: a command envelope or a cancel order.
Signed = TypeVar("Signed", CommandEnvelope, CancelOrder)


@dataclass(frozen=True)
class KeyPair:
    """Where a generated key pair was written, and the id of its public key."""

    private_path: Path
    public_path: Path
    key_id: str


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """First 16 hex characters of sha256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_CHARS]


def generate_keypair(directory: Path, *, overwrite: bool = False) -> KeyPair:
    """Write a new Ed25519 pair into `directory` (made 0700): private 0600, public 0644."""
    private_path = directory / PRIVATE_KEY_NAME
    public_path = directory / PUBLIC_KEY_NAME
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not overwrite:
        raise UsageError(
            f"signing keys already exist: {', '.join(str(p) for p in existing)}",
            hint="keep them, or replace them with --force (then restart every agent with "
            "the new public key)",
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_new(private_path, private_pem, 0o600)
        _write_new(public_path, public_pem, 0o644)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write signing keys into {directory}: {exc.strerror or exc}",
            hint="choose a directory you can write (--dir)",
        ) from None
    return KeyPair(private_path, public_path, key_id_of(key.public_key()))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a fresh file created with `mode`, then move it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created with its final mode: the private key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed the mode given to open
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{what} {path} does not exist", hint=KEYS_HINT) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {what} {path}: {exc.strerror or exc}", hint=KEYS_HINT
        ) from None


def _malformed(path: Path, what: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{what} {path} is not {why}", hint=KEYS_HINT)


class Signer:
    """Signs envelopes (and other records) with the orchestrator's private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id_of(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """Load a PEM PKCS8 Ed25519 private key; ConfigurationError naming the file if unusable."""
        what = "the orchestrator's signing key"
        data = _read_key_file(path, what)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise _malformed(path, what, "an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise _malformed(path, what, "an Ed25519 key")
        return cls(key)

    def sign(self, record: Signed) -> Signed:
        """A copy of `record` (an envelope or a cancel order) naming this key and signed."""
        named = record.model_copy(update={"key_id": self.key_id, "signature": None})
        return named.model_copy(update={"signature": self.sign_bytes(named.canonical_bytes())})

    def sign_bytes(self, data: bytes) -> str:
        """Base64 of the Ed25519 signature of `data`."""
        return base64.b64encode(self._key.sign(data)).decode("ascii")

    def verifier(self) -> Verifier:
        """A Verifier of this key's own signatures (the orchestrator checking what it signed)."""
        return Verifier(self._key.public_key())


class Verifier:
    """Checks signatures against the orchestrator's public key (the agent's only trust root)."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key
        self.key_id = key_id_of(public_key)

    @classmethod
    def from_file(cls, path: Path) -> Verifier:
        """Load a PEM Ed25519 public key; ConfigurationError naming the file if unusable."""
        what = "the orchestrator's public key"
        data = _read_key_file(path, what)
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise _malformed(path, what, "a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise _malformed(path, what, "an Ed25519 key")
        return cls(key)

    @classmethod
    def from_public_bytes(cls, raw: bytes) -> Verifier:
        """The verifier of the raw 32-byte Ed25519 public key `raw` (see `public_bytes`)."""
        return cls(Ed25519PublicKey.from_public_bytes(raw))

    def public_bytes(self) -> bytes:
        """The raw 32-byte public key: how it travels to another process."""
        return self._key.public_bytes_raw()

    def verify(self, envelope: CommandEnvelope | CancelOrder) -> None:
        """Return when the orchestrator's key signed exactly this envelope (or cancel order);
        else SignatureError."""
        if not envelope.signature:
            raise SignatureError("unsigned", "the task carries no signature")
        if envelope.key_id != self.key_id:
            raise SignatureError(
                "unknown_key",
                f"signed by key {envelope.key_id!r}; this agent trusts only key {self.key_id!r}",
                hint="start the agent with the orchestrator's current public key",
            )
        if not self.verify_bytes(envelope.canonical_bytes(), envelope.signature):
            raise SignatureError(
                "bad_signature", "the signature does not match the task's content"
            )

    def verify_bytes(self, data: bytes, signature: str) -> bool:
        """True when `signature` (base64) is this key's signature of `data`."""
        try:
            self._key.verify(base64.b64decode(signature, validate=True), data)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True
