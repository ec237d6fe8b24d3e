"""The audit chain's append side: hash-chained entries added to one Redis stream.

Both the orchestrator and the agents append here (an agent records what it refused); reading
and verifying the chain is the orchestrator's (`orchestrator.audit.log.AuditLog`). The orchestrator
signs each entry it appends (`sig`, over the entry's hash; a staged run of entries is signed once,
by its last entry) and tags each with a MAC only it can check (`mac`, so its own verify needs no
Ed25519 verification per entry); agents hold no key and do neither.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import redis

from tasks import clock
from tasks.auditentry import AuditEntry, entry_json, parse_entry
from tasks.auditrun import AppendedEntries, Run, pack_values
from tasks.auditscripts import APPEND_LUA, APPEND_RUN_LUA
from tasks.errors import LiveResponseError
from tasks.keys import Keys
from tasks.replies import as_text
from tasks.scripts import queue_script

if TYPE_CHECKING:
    from tasks.signing import Signer

#: `prev` of the first entry: there is nothing before it.
GENESIS = "0" * 64
#: Detail keys that would put a secret into the stream; refused at any depth.
FORBIDDEN_DETAIL_KEYS = frozenset({"token", "password", "secret"})
#: How often an append retries after another writer moved the head first.
MAX_APPEND_ATTEMPTS = 100
#: Every field a stored entry must have.
ENTRY_FIELDS = ("ts", "actor", "action", "target", "decision", "details", "prev", "hash")
#: The optional field holding `<key id>:<base64 Ed25519 signature>` of the entry's hash.
SIG_FIELD = "sig"
#: The optional field holding `<key id>:<hex HMAC-SHA256>` of the entry's hash and `sig`, under a
#: key only the holder of that signing key can derive (`mac_key_of`): what the orchestrator's
#: own `verify` checks instead of the Ed25519 signature, about 100 times cheaper.
MAC_FIELD = "mac"
#: What an entry's MAC covers, before its hash.
ENTRY_MAC_CONTEXT = b"liveresponse-audit-entry-mac/1 "
#: The message whose Ed25519 signature the MAC key is derived from (never signed for another use).
MAC_KEY_CONTEXT = b"liveresponse-audit-mac-key/1"
#: The signature part of `sig` on an entry of a run: the run's last entry signs for it.
RUN_MEMBER = "~"
#: What the signature of a run's last entry covers, before the run's length and its hash.
RUN_SIGNATURE_CONTEXT = b"liveresponse-audit-run/1 "
#: Actors whose entries may be unsigned: agents append without the orchestrator's key.
AGENT_ACTOR_PREFIX = "agent:"
#: What an entry's signature covers, before its hash: no other signed record starts so.
ENTRY_SIGNATURE_CONTEXT = b"liveresponse-audit-entry/1 "
#: JSON string encoding, ASCII only: what `to_canonical_json` writes for a str.
_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
#: Witness arguments of an append that checks none (agents, or no witness yet).
NO_GUARD = ("", "")

#: Entries appended by one call of the run script (a longer run is several calls, chained):
#: bounds how long one call holds Redis (about 2 ms per 500 entries here).
RUN_ENTRIES = 500
#: The canonical JSON encoder, built once (`json.dumps` with options builds one per call).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
#: How a forbidden detail key reads in canonical JSON, lowercased; or any key may, when the
#: text holds a \u escape (of a character not in ASCII, whose lowercase may be).
_SECRET_KEY_TEXTS = ("\\u", *(f'"{key}":' for key in sorted(FORBIDDEN_DETAIL_KEYS)))


def digest(data: bytes | str) -> str:
    """`sha256:<hex>` of `data`: what goes into the stream instead of results or secrets."""
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def to_canonical_json(value: Any) -> str:
    """Sorted, compact, ASCII-only JSON: one byte string per value, so hashes are stable."""
    return _CANONICAL.encode(value)


def compute_hash(prev: str, body: Mapping[str, Any]) -> str:
    """sha256(prev ‖ canonical JSON of the entry without its hash), as hex."""
    return text_hash(prev, to_canonical_json(dict(body)))


def text_hash(prev: str, body_text: str) -> str:
    """`compute_hash` of the entry whose body's canonical JSON is `body_text`."""
    return hashlib.sha256((prev + body_text).encode()).hexdigest()


def stored_entry_hash(fields: Mapping[str, str]) -> str:
    """`compute_hash` of an entry from its stored text, without parsing it.

    Equal to `compute_hash` of the parsed entry when `ts` is the `repr` of a finite float and
    `details` is canonical JSON, as the appender stores them. The layout is unambiguous (each
    string is JSON-encoded here, `ts` holds none of `,":}` and `prev` is compared on its own),
    so stored text that hashes the same as what was signed is that text.
    """
    return hash_of_stored(fields["ts"], fields["actor"], fields["action"], fields["target"],
                          fields["decision"], fields["details"], fields["prev"])


def hash_of_stored(
    ts: str, actor: str, action: str, target: str, decision: str, details: str, prev: str
) -> str:
    """`stored_entry_hash` of the stored fields given one by one (a verify reads them so)."""
    return text_hash(prev, stored_body_text(prev, ts, actor, action, target, decision, details))


def stored_body_text(prev: str, ts: str, actor: str, action: str, target: str, decision: str,
                     details: str) -> str:
    """The canonical JSON of an entry without its hash, from its stored fields' text."""
    return (
        f'{{"action":{_json_str(action)},"actor":{_json_str(actor)},'
        f'"decision":{_json_str(decision)},"details":{details},'
        f'"prev":{_json_str(prev)},"target":{_json_str(target)},"ts":{ts}}}'
    )


def entry_signed_bytes(entry_hash: str) -> bytes:
    """What an entry's signature covers: its hash (which binds its content and its prev)."""
    return ENTRY_SIGNATURE_CONTEXT + entry_hash.encode()


def run_signed_bytes(entry_hash: str, length: int) -> bytes:
    """What the signature of a run's last entry covers: the run's length and that entry's hash
    (which binds every entry before it; the length says which of them the run holds)."""
    return RUN_SIGNATURE_CONTEXT + f"{length} {entry_hash}".encode()


def sign_entry(signer: Signer, entry_hash: str) -> str:
    """The `sig` field of the entry whose hash is `entry_hash`: `<key id>:<base64>`."""
    return f"{signer.key_id}:{signer.sign_bytes(entry_signed_bytes(entry_hash))}"


def mac_key_of(signer: Signer) -> bytes:
    """The secret key of `signer`'s entry MACs: sha256 of its signature of a fixed message.

    Ed25519 signatures are deterministic (RFC 8032), so every process holding the private key
    derives the same MAC key, and nobody without it can.
    """
    return hashlib.sha256(MAC_KEY_CONTEXT + signer.sign_bytes(MAC_KEY_CONTEXT).encode()).digest()


def entry_mac(mac_key: bytes, entry_hash: str, sig: str) -> str:
    """Hex HMAC-SHA256, under `mac_key`, of the entry whose hash is `entry_hash` and of its
    `sig` field: an entry whose MAC holds carries the very signature its signer wrote."""
    return hmac.digest(mac_key, entry_mac_message(entry_hash, sig), "sha256").hex()


def entry_mac_message(entry_hash: str, sig: str) -> bytes:
    """What the MAC of the entry whose hash is `entry_hash` and `sig` field is `sig` covers."""
    return ENTRY_MAC_CONTEXT + entry_hash.encode() + b" " + sig.encode()


class EntryMac:
    """`entry_mac` under one key, its HMAC keyed once: each entry's MAC starts from a copy
    (what appending and verifying many entries do)."""

    def __init__(self, mac_key: bytes) -> None:
        self._keyed = hmac.new(mac_key, digestmod="sha256")

    def hex(self, entry_hash: str, sig: str) -> str:
        """`entry_mac(mac_key, entry_hash, sig)`."""
        mac = self._keyed.copy()
        mac.update(entry_mac_message(entry_hash, sig))
        return mac.hexdigest()


def check_details(details: Mapping[str, Any]) -> str:
    """Return `details` as canonical JSON; ValueError if it holds a secret key or is not JSON."""
    try:
        text = to_canonical_json(details)
    except (TypeError, ValueError) as exc:
        _refuse_secret_keys(details, "details")
        raise ValueError(f"audit details must be plain JSON values: {exc}") from exc
    # Every key is in the text as JSON writes it: a secret's name shows there as `"token":`
    # in some case, or behind a \u escape. Only then is the value walked, which names the key.
    lowered = text.lower()
    for key in _SECRET_KEY_TEXTS:
        if key in lowered:
            _refuse_secret_keys(details, "details")
            break
    return text


def _refuse_secret_keys(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in FORBIDDEN_DETAIL_KEYS:
                raise ValueError(
                    f"audit {where} may not hold a key named {key!r}: "
                    "secrets never enter the audit stream (record digest(...) instead)"
                )
            _refuse_secret_keys(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _refuse_secret_keys(item, f"{where}[{i}]")


@dataclass(frozen=True)
class _Attempt:
    """One try at appending an entry after a given prev: its content, hash, signature, argv."""

    body_text: str
    hash: str
    sig: str | None
    guard: tuple[str, str]
    argv: list[str]

    def entry(self, entry_id: str) -> AuditEntry:
        """The entry as appended under `entry_id`."""
        return parse_entry(entry_json(self.body_text, entry_id, self.hash, json.dumps(self.sig)))


class _Draft(NamedTuple):
    """An entry's content before it is chained: what every append attempt hashes."""

    actor: str
    action: str
    target: str
    decision: str
    details_json: str

    def fields(self, prev: str) -> tuple[str, str, list[str]]:
        """(body's canonical JSON, hash, field/value pairs) of this entry chained after `prev`."""
        # The time is taken per attempt so a retried entry is not stamped before its prev.
        ts = repr(float(clock.now()))
        body_text = stored_body_text(prev, ts, *self)
        entry_hash = text_hash(prev, body_text)
        stored = (ts, *self, prev, entry_hash)
        pairs = [text for pair in zip(ENTRY_FIELDS, stored, strict=True) for text in pair]
        return body_text, entry_hash, pairs


class AuditChain:
    """Appends entries to the audit stream under one key prefix, never forking the chain.

    With `signer` (the orchestrator's key) each entry carries its signature; an agent's
    chain has none.
    """

    #: Whether an append without a signer is refused (the orchestrator's side never writes one).
    signed_only: ClassVar[bool] = False

    def __init__(self, client: redis.Redis, keys: Keys, signer: Signer | None = None) -> None:
        self.client = client
        self.keys = keys
        self.signer = signer
        self._mac_key = mac_key_of(signer) if signer is not None else b""
        self._entry_mac = EntryMac(self._mac_key) if signer else None
        self._append = client.register_script(APPEND_LUA)
        self._append_run = client.register_script(APPEND_RUN_LUA)
        # Last head this process wrote or saw: a hint that saves a GET per append. The Lua
        # compare-and-append stays the authority; a stale hint only costs one retry.
        self._head_hint: str | None = None

    def append(
        self, actor: str, action: str, target: str, decision: str, **details: Any
    ) -> AuditEntry:
        """Add one entry at the head of the chain; retries if another writer got there first."""
        draft = _Draft(actor, action, target, decision, check_details(details))
        return self._commit(draft, self._head_hint or self._read_head(), self._guard())

    def stage(
        self, pipe: Any, actor: str, action: str, target: str, decision: str, **details: Any
    ) -> Callable[[Any], AuditEntry]:
        """Queue a first append attempt on `pipe`, sent with the caller's other writes.

        Returns `finish(reply)`: give it this attempt's reply from `pipe.execute()`; it
        returns the entry, retrying on its own if another writer moved the head meanwhile.
        """
        draft = _Draft(actor, action, target, decision, check_details(details))
        guard = self._guard()
        attempt = self._attempt(draft, self._head_hint or self._read_head(), guard)
        queue_script(pipe, self._append, [self.keys.audit, self.keys.audit_head], attempt.argv)

        def finish(reply: Any) -> AuditEntry:
            entry = self._settle(reply, attempt)
            return entry if entry is not None else self._commit(draft, as_text(reply[1]), guard)

        return finish

    def stage_many(
        self, pipe: Any, entries: Sequence[tuple[str, str, str, str, dict[str, Any]]]
    ) -> Callable[[Sequence[Any]], Sequence[AuditEntry]]:
        """Queue many appends on `pipe`, each chained onto the one before it (a fleet's
        commands: one round trip for all of them). `entries` are (actor, action, target,
        decision, details). They go in runs of up to `RUN_ENTRIES` per script call, each run
        appended whole or not at all and signed once, by its last entry.

        Returns `finish(replies)`: give it these calls' replies, in order (the pipeline's
        replies from its length before this call to its length after); it returns the
        entries (read as models when first used). Runs from the first that lost the head to
        another writer on are drafted again onto the new head and appended run by run, so the
        chain never forks and nothing is dropped.
        """
        # Every entry's details are checked before anything is queued.
        details = [check_details(entry[4]) for entry in entries]
        guard = self._guard()
        prev = self._head_hint or self._read_head()
        runs: list[Run] = []
        for start in range(0, len(entries), RUN_ENTRIES):
            # Only the first run checks the witnessed entry: the rest chain onto it.
            end = start + RUN_ENTRIES
            run = self._run(entries[start:end], details[start:end], prev,
                            guard if not runs else NO_GUARD)
            queue_script(pipe, self._append_run, [self.keys.audit, self.keys.audit_head],
                         run.argv)
            runs.append(run)
            prev = run.hashes[-1]

        def finish(replies: Sequence[Any]) -> AppendedEntries:
            out = AppendedEntries()
            for i, (reply, run) in enumerate(zip(replies, runs, strict=True)):
                if reply[0] != 1:
                    self._refuse_lost_head(reply)
                    self._ran(out, guard, held=i == 0 or int(replies[0][2]) == 1)
                    out.extend(self._commit_runs(entries[i * RUN_ENTRIES:],
                                                 details[i * RUN_ENTRIES:], as_text(reply[1])))
                    return out
                out.add(run, as_text(reply[1]))
            self._ran(out, guard, held=bool(replies) and int(replies[0][2]) == 1)
            return out

        return finish

    def _run(self, entries: Sequence[tuple[str, str, str, str, Any]], details: Sequence[str],
             prev: str, guard: tuple[str, str]) -> Run:
        """`entries` (with their checked `details`) chained after `prev` as one run, and the
        run script's arguments: per entry its stored values but `prev` (the script links each
        to the one before), all in one argument (redis-py's encoding of an argument costs
        more than a value's packing)."""
        self._require_signer()
        # One signature for the run, by its last entry; the others are its members.
        member = f"{self.signer.key_id}:{RUN_MEMBER}" if self.signer is not None else None
        body_texts: list[str] = []
        hashes: list[str] = []
        values: list[str] = []
        entry_hash, last, sig, now = prev, len(entries) - 1, member, clock.now
        for i, ((actor, action, target, decision, _), details_json) in enumerate(
                zip(entries, details, strict=True)):
            ts = repr(float(now()))
            body_text = stored_body_text(entry_hash, ts, actor, action, target, decision,
                                         details_json)
            entry_hash = text_hash(entry_hash, body_text)
            body_texts.append(body_text)
            hashes.append(entry_hash)
            values += (ts, actor, action, target, decision, details_json, entry_hash)
            if member is not None:
                sig = member if i < last else self._signature(entry_hash, last + 1)
                values += (sig, self._mac(entry_hash, sig))
        argv: list[str | bytes] = [prev, entry_hash, *guard, pack_values(values),
                                   "" if member is None else "1"]
        return Run(body_texts, hashes, sig, member, argv)

    def _ran(self, appended: AppendedEntries, guard: tuple[str, str], held: bool) -> None:
        """After runs were appended: one head hint and one witness move for all of them."""
        if appended:
            last = appended.last()
            self._head_hint = last.hash
            self._appended(last, guard, held=held)

    def _commit_runs(self, entries: Sequence[tuple[str, str, str, str, Any]],
                     details: Sequence[str], prev: str) -> AppendedEntries:
        """Append `entries` after `prev` run by run, drafting a run again after a conflict."""
        out = AppendedEntries()
        start = conflicts = 0
        while start < len(entries):
            guard = self._guard()
            end = start + RUN_ENTRIES
            run = self._run(entries[start:end], details[start:end], prev, guard)
            reply = self._append_run(keys=[self.keys.audit, self.keys.audit_head], args=run.argv)
            if reply[0] == 1:
                appended = AppendedEntries()
                appended.add(run, as_text(reply[1]))
                self._ran(appended, guard, held=int(reply[2]) == 1)
                out.extend(appended)
                start += len(run.hashes)
                prev = run.hashes[-1]
                continue
            self._refuse_lost_head(reply)
            conflicts += 1
            if conflicts >= MAX_APPEND_ATTEMPTS:
                raise LiveResponseError(
                    f"could not append to the audit stream after {conflicts} attempts",
                    hint="too many concurrent writers; retry the action",
                )
            prev = as_text(reply[1])
        return out

    def _guard(self) -> tuple[str, str]:
        """(id, hash) of the entry the append script must find still in the stream, or none."""
        return NO_GUARD

    def _appended(self, entry: AuditEntry, guard: tuple[str, str], held: bool) -> None:
        """Called once per entry appended; `held`: the guard entry was still in the stream."""

    def _read_head(self) -> str:
        return as_text(self.client.get(self.keys.audit_head)) or GENESIS

    def _require_signer(self) -> None:
        if self.signer is None and self.signed_only:
            raise LiveResponseError(
                "the orchestrator appends only signed audit entries, and has no signing key",
                hint="build the audit log with the orchestrator's Signer",
            )

    def _signature(self, entry_hash: str, length: int) -> str:
        """The `sig` field of an entry signed on its own (`length` 1) or of the last entry of
        a run of `length` (the run's other entries carry `<key id>:~`)."""
        assert self.signer is not None
        if length == 1:
            return sign_entry(self.signer, entry_hash)
        signature = self.signer.sign_bytes(run_signed_bytes(entry_hash, length))
        return f"{self.signer.key_id}:{signature}:{length}"

    def _mac(self, entry_hash: str, sig: str) -> str:
        """The `mac` field of an entry: `entry_mac` under this chain's MAC key."""
        assert self.signer is not None and self._entry_mac is not None
        return f"{self.signer.key_id}:{self._entry_mac.hex(entry_hash, sig)}"

    def _attempt(self, draft: _Draft, prev: str, guard: tuple[str, str]) -> _Attempt:
        """One try at appending `draft` after `prev`, signed on its own."""
        self._require_signer()
        body_text, entry_hash, pairs = draft.fields(prev)
        sig = None
        if self.signer is not None:
            sig = self._signature(entry_hash, 1)
            pairs += [SIG_FIELD, sig, MAC_FIELD, self._mac(entry_hash, sig)]
        return _Attempt(body_text, entry_hash, sig, guard, [prev, entry_hash, *guard, *pairs])

    def _commit(self, draft: _Draft, prev: str, guard: tuple[str, str]) -> AuditEntry:
        for _ in range(MAX_APPEND_ATTEMPTS):
            attempt = self._attempt(draft, prev, guard)
            reply = self._append(keys=[self.keys.audit, self.keys.audit_head], args=attempt.argv)
            entry = self._settle(reply, attempt)
            if entry is not None:
                return entry
            prev = as_text(reply[1])
        raise LiveResponseError(
            f"could not append to the audit stream after {MAX_APPEND_ATTEMPTS} attempts",
            hint="too many concurrent writers; retry the action",
        )

    def _settle(self, reply: Any, attempt: _Attempt) -> AuditEntry | None:
        """The entry when the script appended it, None on a head conflict; raises if no head."""
        if reply[0] == 1:
            self._head_hint = attempt.hash
            entry = attempt.entry(as_text(reply[1]))
            self._appended(entry, attempt.guard, held=int(reply[2]) == 1)
            return entry
        self._refuse_lost_head(reply)
        return None

    def _refuse_lost_head(self, reply: Any) -> None:
        """Raise when an append script found the head gone while the stream has entries."""
        if reply[0] == -1:
            raise LiveResponseError(
                f"audit head {self.keys.audit_head} is missing while the stream has entries",
                hint="run `lr audit verify`; the audit chain may have been tampered with",
            )
