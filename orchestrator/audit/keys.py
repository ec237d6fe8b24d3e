"""The public keys audit signatures are checked with: the orchestrator's, and keys it retired.

An audit entry, checkpoint or export header names the key that signed it by its key id. A
key rotation (`lr admin keys init --force`) keeps the old public key in `retired/` next to
the new pair, so the entries it signed still verify; a key once succeeded in the chain may not
sign a later entry (`ChainWalk`), so a retired key that leaked cannot add to the chain.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from tasks.errors import ConfigurationError
from tasks.signing import PUBLIC_KEY_NAME, Verifier

#: The directory, beside the key pair, that holds the public keys of earlier pairs.
RETIRED_DIR = "retired"


class TrustedKeys:
    """Verifiers by key id; the first one given is the key in force."""

    def __init__(self, verifiers: Iterable[Verifier]) -> None:
        self._by_id: dict[str, Verifier] = {}
        for verifier in verifiers:
            self._by_id.setdefault(verifier.key_id, verifier)
        if not self._by_id:
            raise ValueError("at least one public key is needed")

    @classmethod
    def of(cls, keys: Verifier | TrustedKeys | None) -> TrustedKeys | None:
        """`keys` as TrustedKeys (one Verifier becomes a set of one); None stays None."""
        if keys is None or isinstance(keys, TrustedKeys):
            return keys
        return cls([keys])

    @classmethod
    def with_retired(cls, current: Verifier, key_dir: Path) -> TrustedKeys:
        """`current` and every public key in `key_dir/retired/` (unreadable files skipped)."""
        return cls([current, *load_retired(key_dir / RETIRED_DIR)])

    def with_current(self, current: Verifier) -> TrustedKeys:
        """These keys with `current` first (the key signing from now on)."""
        return TrustedKeys([current, *self._by_id.values()])

    def get(self, key_id: str) -> Verifier | None:
        """The verifier of `key_id`, None when that key is not trusted."""
        return self._by_id.get(key_id)

    @property
    def ids(self) -> list[str]:
        """Every trusted key id, the key in force first."""
        return list(self._by_id)

    def describe(self) -> str:
        """`'a1b2…'` or `'a1b2…', 'c3d4…'`: the key ids, for a problem message."""
        return ", ".join(repr(key_id) for key_id in self._by_id)


def load_retired(directory: Path) -> list[Verifier]:
    """Every `*.pub` in `directory` that is an Ed25519 public key, in name order."""
    found: list[Verifier] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.pub")):
        try:
            found.append(Verifier.from_file(path))
        except ConfigurationError:  # a stray file there must not stop the orchestrator
            continue
    return found


def retire_public_key(public_path: Path, key_dir: Path) -> Path | None:
    """Copy the public key at `public_path` into `key_dir/retired/<key id>.pub`; its path.

    None when there is no readable key at `public_path`. Done before a pair is replaced, so
    the audit entries the old key signed keep verifying.
    """
    try:
        verifier = Verifier.from_file(public_path)
    except ConfigurationError:  # nothing usable to keep
        return None
    retired = key_dir / RETIRED_DIR
    retired.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = retired / f"{verifier.key_id}.pub"
    if not target.exists():
        shutil.copyfile(public_path, target)
        target.chmod(0o644)
    return target


def public_key_beside(private_path: Path) -> Path:
    """Where `lr admin keys init` wrote the public half of the private key at `private_path`."""
    return private_path.with_name(PUBLIC_KEY_NAME)
