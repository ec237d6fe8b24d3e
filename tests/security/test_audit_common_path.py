"""`ChainWalk.step_many` checks the common entry inline: for every alteration of any entry of a
chain (each field, its name, its place, its id) it names the same problem at the same entry,
and leaves the walk in the same state, as stepping each entry through `ChainWalk.step`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.audit.checkpoint import Checkpoint
from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.log import AuditLog
from orchestrator.audit.segments import raw_reader, read_batches
from orchestrator.audit.walk import ChainWalk
from orchestrator.audit.witness import WitnessMark
from tasks.auditchain import AuditChain, entry_mac, mac_key_of, stored_entry_hash
from tasks.keys import Keys
from tasks.signing import KeyPair, Signer, Verifier, generate_keypair

pytestmark = pytest.mark.integration

Entry = tuple[str, list[str]]
Walk = Callable[[], ChainWalk]


@pytest.fixture
def other_signer(tmp_path: Path) -> Signer:
    """A second trusted key (one retired by a rotation, say) whose MACs the walk can check."""
    return Signer.from_file(generate_keypair(tmp_path / "other").private_path)


@pytest.fixture
def chain(redis_client: redis.Redis, keys: Keys, signing_keys: KeyPair,
          tmp_path: Path) -> Iterator[tuple[AuditLog, list[Entry]]]:
    """Runs of staged entries, entries signed one by one and agents' entries, as XRANGE
    returns them."""
    log = AuditLog(redis_client, keys, Signer.from_file(signing_keys.private_path))
    agent = AuditChain(redis_client, keys)
    log.append("alice", "session.opened", "dev1", "allowed")
    for start in (0, 4):
        pipe = redis_client.pipeline(transaction=False)
        finish = log.stage_many(pipe, [
            ("alice", "command.requested", "dev1", "allowed", {"command_id": f"c{i}", "n": i})
            for i in range(start, start + 4)])
        finish(pipe.execute())
        agent.append("agent:dev1", "agent.rejected", f"c{start}", "rejected",
                     reason="expired", at={"b": [1, 2.5], "a": "é"})
    log.append("alice", "session.closed", "dev1", "allowed")
    reader = raw_reader(redis_client)
    entries = [e for batch in read_batches(reader, keys.audit, None, "+") for e in batch]
    yield log, entries
    log.close()


def walks(log: AuditLog, entries: list[Entry], verifier: Verifier,
          other: Signer) -> dict[str, tuple[Walk, int]]:
    """Fresh walks of every kind a verify makes, each with how many of the oldest entries it
    stands for already (it is fed the rest): the whole chain, a segment, with a witness,
    without MAC keys, after a trim's checkpoint inside a run, after a segment (the first entry
    and the run after it) was joined."""
    keys = TrustedKeys([verifier, other.verifier()])
    macs = {**log.mac_keys(), other.key_id: mac_key_of(other)}
    middle = entries[len(entries) // 2]
    witness = WitnessMark(middle[0], value(middle[1], "hash"))
    # entries[1] opens the first run: a trim up to it leaves the chain starting inside it.
    checkpoint = Checkpoint(anchor=value(entries[1][1], "hash"), anchor_id=entries[1][0],
                            anchor_ts=1.0, removed=2, trimmed_at=2.0, key_id="k", signature="s")

    def joined() -> ChainWalk:
        walk = ChainWalk(keys, mac_keys=macs)
        walk.join(5, entries[4][0], value(entries[4][1], "hash"),
                  [(value(entries[0][1], "sig").partition(":")[0], entries[0][0])], False)
        return walk

    return {
        "chain": (lambda: ChainWalk(keys, mac_keys=macs), 0),
        "segment": (lambda: ChainWalk.segment(keys, None, macs), 0),
        "witnessed": (lambda: ChainWalk(keys, witness=witness, mac_keys=macs), 0),
        "no MAC keys": (lambda: ChainWalk(keys), 0),
        "checkpoint": (lambda: ChainWalk(keys, checkpoint=checkpoint, mac_keys=macs), 2),
        "joined": (joined, 5),
    }


def outcome(walk: ChainWalk, problem: tuple[str, str] | None) -> tuple[object, ...]:
    return (problem, walk.entries, walk.expected_prev, walk.last_id, walk.first_id,
            walk.first_prev, walk.pending, walk.key_runs, walk.witness_found, walk.state(),
            walk.head_problem(walk.expected_prev))


def by_step(make: Walk, entries: list[Entry]) -> tuple[object, ...]:
    walk = make()
    for entry_id, flat in entries:
        it = iter(flat)
        problem = walk.step(entry_id, dict(zip(it, it, strict=True)))
        if problem:
            return outcome(walk, (problem, entry_id))
    return outcome(walk, None)


def by_step_many(make: Walk, entries: list[Entry]) -> tuple[object, ...]:
    walk = make()
    return outcome(walk, walk.step_many(entries))


def set_value(flat: list[str], name: str, value: str) -> list[str]:
    out = list(flat)
    out[out.index(name) + 1] = value
    return out


def value(flat: list[str], name: str) -> str:
    return flat[flat.index(name) + 1] if name in flat[0::2] else ""


def rechained(entries: list[Entry], start: int) -> list[Entry]:
    """`entries` with the hash of the one at `start` recomputed from its stored text, and every
    later prev and hash after it, as an intruder recomputes them (signatures and MACs stay)."""
    out = list(entries[:start])
    for entry_id, flat in entries[start:]:
        if out and "prev" in flat[0::2]:
            flat = set_value(flat, "prev", value(out[-1][1], "hash"))
        names = flat[0::2]
        if "hash" in names and set(("ts", "actor", "action", "target", "decision", "details",
                                    "prev")) <= set(names):
            it = iter(flat)
            flat = set_value(flat, "hash", stored_entry_hash(dict(zip(it, it, strict=True))))
        out.append((entry_id, flat))
    return out


def alterations(entries: list[Entry], mac_keys: dict[str, bytes], other: Signer
                ) -> Iterator[tuple[str, list[Entry]]]:
    """(what was done, the altered chain) for each alteration of each entry, each also with
    the hashes from it on recomputed. `mac_keys` and `other` make MACs that hold for altered
    signature fields (only the keys' holder could): the walk's run and key checks must name
    what they cover without the MAC's help."""
    for i in range(len(entries)):
        for what, chain in _entry_alterations(entries, i, mac_keys, other):
            yield what, chain
            if i < len(chain):
                yield what + ", rechained", rechained(chain, i)
        if value(entries[i][1], "sig").endswith(":~") and (
                i == 0 or not value(entries[i - 1][1], "sig").endswith(":~")):
            chain, j = list(entries), i
            while value(chain[j][1], "sig").endswith(":~"):
                chain[j] = (chain[j][0], resigned(chain[j][1], f"{other.key_id}:~",
                                                  mac_key_of(other)))
                j += 1
            yield f"{i}: its run's members signed by the other key", chain


def resigned(flat: list[str], sig: str, mac_key: bytes) -> list[str]:
    """`flat` with `sig` and a MAC of it that holds under `mac_key`."""
    mac = f"{sig.partition(':')[0]}:{entry_mac(mac_key, value(flat, 'hash'), sig)}"
    return set_value(set_value(flat, "sig", sig), "mac", mac)


def _entry_alterations(entries: list[Entry], i: int, mac_keys: dict[str, bytes],
                       other: Signer) -> Iterator[tuple[str, list[Entry]]]:
    entry_id, flat = entries[i]

    def altered(new_id: str, new_flat: list[str]) -> list[Entry]:
        return [*entries[:i], (new_id, new_flat), *entries[i + 1:]]

    names = flat[0::2]
    for name in names:
        old = value(flat, name)
        for new in (old + "0", old[:-1], "", " " + old, old.upper()):
            if new != old:
                yield f"{i} {name}={new!r}", altered(entry_id, set_value(flat, name, new))
    ts = value(flat, "ts")
    for new in ("nan", "inf", "-inf", "1e400", ts + "e0", "١" + ts, ts.replace(".", ":")):
        yield f"{i} ts={new!r}", altered(entry_id, set_value(flat, "ts", new))
    details = value(flat, "details")
    for new in ("{}", "[]", "null", details.replace(":", ": ")):
        yield f"{i} details={new!r}", altered(entry_id, set_value(flat, "details", new))
    if "sig" in names:
        key_id, _, rest = value(flat, "sig").partition(":")
        signature = rest.partition(":")[0]
        macs = {**mac_keys, other.key_id: mac_key_of(other)}
        for new in (f"{key_id}:~:", f"{key_id}:~:1", f"{key_id}:~:4", f"{key_id}:{signature}",
                    f"{key_id}:{signature}:1", f"{key_id}:{signature}:04",
                    f"{key_id}:{signature}:+4", f"{key_id}:{signature}:٤", "other:~", key_id,
                    f"{other.key_id}:~", f"{other.key_id}:{signature}:{len(entries)}"):
            yield f"{i} sig={new!r}", altered(entry_id, set_value(flat, "sig", new))
            mac_key = macs.get(new.partition(":")[0])
            if mac_key is not None:
                yield f"{i} sig={new!r} with its MAC", altered(
                    entry_id, resigned(flat, new, mac_key))
                named_for = set_value(flat, "sig", new)
                yield f"{i} sig={new!r} with its MAC named for {key_id}", altered(
                    entry_id, set_value(named_for, "mac",
                                        f"{key_id}:{entry_mac(mac_key, value(flat, 'hash'), new)}"))
        mac = value(flat, "mac")
        for new in (mac.partition(":")[2], key_id, key_id + ":", "other" + mac[len(key_id):]):
            yield f"{i} mac={new!r}", altered(entry_id, set_value(flat, "mac", new))
        yield f"{i} without mac", altered(entry_id, flat[:-2])
        yield f"{i} without sig and mac", altered(entry_id, flat[:-4])
    else:
        for key_id in (*mac_keys, other.key_id):
            yield f"{i} marked as a member of a run of {key_id}", altered(
                entry_id, [*flat, "sig", f"{key_id}:~"])
    yield f"{i} fields swapped", altered(entry_id, [*flat[2:4], *flat[0:2], *flat[4:]])
    yield f"{i} field repeated", altered(entry_id, [*flat, *flat[2:4]])
    yield f"{i} field renamed", altered(entry_id, ["when", *flat[1:]])
    yield f"{i} field added", altered(entry_id, [*flat, "note", "x"])
    for new_id in ("0" + entry_id, "+" + entry_id, entry_id.replace("-", "_"), "1-0",
                   entry_id.partition("-")[0], "٣" + entry_id, entry_id + "0"):
        yield f"{i} id={new_id!r}", altered(new_id, flat)
    if i:
        yield f"{i} id of the one before", altered(entries[i - 1][0], flat)
        yield f"{i} swapped with the one before", [
            *entries[:i - 1], (entries[i - 1][0], flat), (entry_id, entries[i - 1][1]),
            *entries[i + 1:]]
        yield f"{i} deleted", [*entries[:i], *entries[i + 1:]]
        yield f"{i} repeated", [*entries[:i + 1], *entries[i:]]


def test_an_untouched_chain_steps_alike_on_both_paths(
    chain: tuple[AuditLog, list[Entry]], signing_keys: KeyPair, other_signer: Signer
) -> None:
    log, entries = chain
    verifier = Verifier.from_file(signing_keys.public_path)
    for kind, (make, skip) in walks(log, entries, verifier, other_signer).items():
        expected = by_step(make, entries[skip:])
        assert expected[0] is None, (kind, expected)
        assert by_step_many(make, entries[skip:]) == expected, kind


def test_every_alteration_is_named_alike_on_both_paths(
    chain: tuple[AuditLog, list[Entry]], signing_keys: KeyPair, other_signer: Signer
) -> None:
    log, entries = chain
    named = 0
    verifier = Verifier.from_file(signing_keys.public_path)
    for kind, (make, skip) in walks(log, entries, verifier, other_signer).items():
        for what, altered in alterations(entries, log.mac_keys(), other_signer):
            expected = by_step(make, altered[skip:])
            assert by_step_many(make, altered[skip:]) == expected, (kind, what)
            named += expected[0] is not None
    assert named > 1000  # the alterations are really found, not only compared
