"""A long chain checked in segments, in parallel processes, and joined at their ends.

One Python process reads a stream at 100,000–170,000 entries/s, so a chain of a million is
split by stream id into segments that worker processes check on their own (`ChainWalk.segment`:
fields, hashes, links, signatures or MACs, ids in order, key rotation within the segment). The
parent then joins them in chain order on the same `ChainWalk` that a sequential pass would use:
each segment's first `prev` must be the hash the one before ended on, its ids must follow, its
key runs must keep the rotation rule, and the witnessed entry must be where the witness says.
A segment that fails anything is walked again in the parent, entry by entry from the joined
state, so the verdict (problem, entry, count) is the one a single sequential pass gives.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.walk import ChainWalk
from orchestrator.audit.witness import id_order
from tasks.errors import LiveResponseError
from tasks.signing import Verifier

#: Chains shorter than this are checked in one pass: starting worker processes costs more.
PARALLEL_MIN_ENTRIES = 50_000
#: Segments per worker process: more, smaller segments even out a chain whose entries bunch
#: in time (segments are cut by stream id, that is by time).
SEGMENTS_PER_WORKER = 4
#: Entries per XRANGE in a worker.
READ_BATCH = 2000
#: Largest stream sequence number: the inclusive end of a millisecond.
MAX_SEQ = 2**64 - 1
#: Connection classes a worker rebuilds from plain settings.
_PORTABLE = ("Connection", "SSLConnection", "UnixDomainSocketConnection")
#: Connection settings a worker may take over from the parent's client (plain values only).
_PLAIN = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class SegmentTask:
    """What a worker needs to check the entries after `after_id` up to `upto_id`."""

    connection_class: str
    connection_kwargs: dict[str, Any]
    stream: str
    after_id: str | None
    upto_id: str
    #: Raw public keys and MAC keys, as hex (tasks travel to the workers as JSON).
    public_keys: list[str]
    mac_keys: dict[str, str]
    witness: tuple[str, str] | None


@dataclass(frozen=True)
class SegmentResult:
    """A worker's finding: the segment's ends, its key runs, and whether anything failed."""

    entries: int
    first_id: str | None
    first_prev: str | None
    last_id: str | None
    last_hash: str | None
    failed: bool
    key_runs: list[tuple[str, str]]
    #: The first entry at or after the witnessed id: True when it is the witnessed entry
    #: with its hash, False when not, None when the segment has no such entry.
    witness_seen: bool | None


def default_workers() -> int:
    """Worker processes for a parallel pass: one per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan_segments(
    client: redis.Redis, stream: str, after_id: str | None, newest_id: str, parts: int
) -> list[tuple[str | None, str]]:
    """(after id, up to id) of `parts` segments covering the stream after `after_id` (None:
    from its start) up to `newest_id`, cut at even steps of stream time."""
    start = "(" + after_id if after_id else "-"
    first = client.xrange(stream, min=start, max=newest_id, count=1)
    if not first:
        return [(after_id, newest_id)]
    lo = id_order(_text(first[0][0] or b""))[0]
    hi = id_order(newest_id)[0]
    cuts = sorted({lo + (hi - lo) * i // parts for i in range(1, parts)} - {hi})
    bounds: list[tuple[str | None, str]] = []
    prev = after_id
    for ms in cuts:
        upto = f"{ms}-{MAX_SEQ}"
        bounds.append((prev, upto))
        prev = upto
    bounds.append((prev, newest_id))
    return bounds


def walk_segments(
    client: redis.Redis,
    stream: str,
    walk: ChainWalk,
    newest_id: str,
    scan: Any,
    *,
    workers: int,
) -> tuple[str | None, str | None]:
    """Check the chain up to `newest_id` in parallel segments and join them onto `walk`;
    (problem, entry id) of the first problem in chain order, (None, None) when sound.

    `scan(after_id, upto_id)` yields a segment's entries in batches (`read_batches`) for a
    re-walk in this process.
    """
    bounds = plan_segments(client, stream, None, newest_id, workers * SEGMENTS_PER_WORKER)
    connection_class, kwargs = connection_of(client)
    keys = walk.keys
    w = walk.witness
    tasks = [
        SegmentTask(
            connection_class=f"{connection_class.__module__}:{connection_class.__qualname__}",
            connection_kwargs=kwargs, stream=stream, after_id=after, upto_id=upto,
            public_keys=[keys.get(k).public_bytes().hex()  # type: ignore[union-attr]
                         for k in keys.ids] if keys else [],
            mac_keys={k: v.hex() for k, v in walk.mac_keys.items()},
            witness=(w.id, w.hash) if w else None,
        )
        for after, upto in bounds
    ]
    for task, result in zip(tasks, run_workers(tasks, workers), strict=True):
        if (result.entries == 0 and not result.failed) or _joins(walk, result):
            continue
        for batch in scan(task.after_id, task.upto_id):
            found = walk.step_many(batch)
            if found:
                return found
    return None, None


def run_workers(tasks: list[SegmentTask], workers: int) -> list[SegmentResult]:
    """Check `tasks` in `workers` processes (`python -m orchestrator.audit.segments`, given
    every `workers`-th segment each, so segments of a busy time spread over them)."""
    # Plain processes of our own, not multiprocessing: its workers import the parent's main
    # module (the whole server) before they start.
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    procs = []
    for k in range(workers):
        mine = [dataclasses.asdict(t) for t in tasks[k::workers]]
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.audit.segments"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        procs.append((proc, json.dumps(mine).encode()))
    answers = []
    try:
        for proc, given in procs:
            out, err = proc.communicate(given)
            if proc.returncode != 0:
                raise LiveResponseError(
                    f"an audit verify worker failed: {err.decode(errors='replace').strip()}",
                    hint="see the orchestrator's log; run lr audit verify again",
                )
            answers.append([SegmentResult(**r) for r in json.loads(out)])
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results: list[SegmentResult] = [None] * len(tasks)  # type: ignore[list-item]
    for k, answer in enumerate(answers):
        results[k::workers] = answer
    return results


def _joins(walk: ChainWalk, result: SegmentResult) -> bool:
    """Take `result` onto `walk` when it is sound and fits where `walk` ended."""
    if result.failed or walk.pending or result.first_prev != walk.expected_prev:
        return False
    assert result.first_id and result.last_id and result.last_hash
    if not walk.follows(result.first_id):
        return False
    found = False
    if walk.witness is not None and not walk.witness_found and result.witness_seen is not None:
        if not result.witness_seen:
            return False
        found = True
    return walk.join(result.entries, result.last_id, result.last_hash, result.key_runs, found)


def check_segment(task: SegmentTask) -> SegmentResult:
    """Check one segment on its own (in a worker process), stopping at its first problem."""
    module, _, name = task.connection_class.partition(":")
    client = raw_client(getattr(importlib.import_module(module), name), task.connection_kwargs)
    try:
        keys = TrustedKeys([Verifier.from_public_bytes(bytes.fromhex(raw))
                            for raw in task.public_keys]) if task.public_keys else None
        mac_keys = {k: bytes.fromhex(v) for k, v in task.mac_keys.items()}
        walk = ChainWalk.segment(keys, task.after_id, mac_keys)
        witness_order = id_order(task.witness[0]) if task.witness else None
        seen: bool | None = None
        failed = False
        for batch in read_batches(client, task.stream, task.after_id, task.upto_id):
            if walk.step_many(batch):
                failed = True
                break
            if seen is None and witness_order is not None and task.witness is not None:
                seen = _witness_seen(batch, witness_order, task.witness)
        last_hash = walk.expected_prev if walk.entries else None
        return SegmentResult(
            entries=walk.entries, first_id=walk.first_id, first_prev=walk.first_prev,
            last_id=walk.last_id, last_hash=last_hash,
            # A run cut by the segment's end is checked across the join by a re-walk.
            failed=failed or walk.pending > 0, key_runs=walk.key_runs,
            witness_seen=seen,
        )
    except (UnicodeDecodeError, ValueError):
        # Bytes that are not text, or a key that is not one: the parent's re-walk names it.
        return SegmentResult(0, None, None, None, None, True, [], None)
    finally:
        client.close()


def _witness_seen(
    batch: list[tuple[str, list[str]]], witness_order: tuple[int, int], witness: tuple[str, str]
) -> bool | None:
    """Whether the first entry of `batch` at or after the witnessed id is the witnessed entry
    with its hash; None when the batch has no such entry."""
    for entry_id, flat in batch:
        if id_order(entry_id) >= witness_order:
            it = iter(flat)
            return (entry_id, dict(zip(it, it, strict=True))["hash"]) == witness
    return None


def raw_client(connection_class: type, connection_kwargs: dict[str, Any]) -> redis.Redis:
    """A client on the parent's server whose XRANGE replies come back as Redis sent them,
    decoded (by hiredis, in C) but not made into dicts."""
    raw = redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=connection_class, **{**connection_kwargs, "decode_responses": True}))
    raw.set_response_callback("XRANGE", lambda reply, **_: reply)
    return raw


def raw_reader(client: redis.Redis) -> redis.Redis:
    """`raw_client` on the server `client` talks to (its own connections); when its
    connections cannot be rebuilt from plain settings (`portable`), a client on its own pool
    whose replies `read_raw` decodes."""
    if portable(client):
        return raw_client(*connection_of(client))
    raw = redis.Redis(connection_pool=client.connection_pool)
    raw.set_response_callback("XRANGE", lambda reply, **_: reply)
    return raw


def portable(client: redis.Redis) -> bool:
    """Whether another process can connect as `client` does from `connection_of` alone (a
    plain TCP, TLS or unix socket connection; not, e.g., one managed by Sentinel)."""
    cls = client.connection_pool.connection_class
    return cls.__module__ == "redis.connection" and cls.__name__ in _PORTABLE


def connection_of(client: redis.Redis) -> tuple[type, dict[str, Any]]:
    """How to connect to `client`'s server from another process: class and plain settings."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items()
              if isinstance(v, _PLAIN) and not k.startswith("orig_")}
    return pool.connection_class, kwargs


def read_raw(
    client: redis.Redis, stream: str, after_id: str | None, upto_id: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """Entries after `after_id` up to `upto_id`, as (id, fields), from raw XRANGE replies
    (redis-py's reply parsing into dicts costs more than the check itself).

    `client` must return XRANGE replies unparsed (`raw_client`)."""
    for batch in read_batches(client, stream, after_id, upto_id):
        for entry_id, flat in batch:
            it = iter(flat)
            yield entry_id, dict(zip(it, it, strict=True))


def read_batches(
    client: redis.Redis, stream: str, after_id: str | None, upto_id: str
) -> Iterator[list[tuple[str, list[str]]]]:
    """The entries of `read_raw` in XRANGE's own batches, each entry as (id, [name, value,
    ...]) in stored order: what `ChainWalk.step_many` takes.

    The next batch is asked for before a batch is handed on, so Redis prepares it while the
    caller works on this one (on a connection of its own, for as long as the reading lasts)."""
    pool = client.connection_pool
    conn = pool.get_connection()
    asked = False
    try:
        conn.send_command("XRANGE", stream, "(" + after_id if after_id else "-", upto_id,
                          "COUNT", READ_BATCH)
        asked = True
        while asked:
            batch = conn.read_response()
            asked = False
            if batch and isinstance(batch[0][0], bytes):  # a client that does not decode
                batch = [(_text(entry_id), [_text(x) for x in flat]) for entry_id, flat in batch]
            if len(batch) == READ_BATCH:
                conn.send_command("XRANGE", stream, "(" + batch[-1][0], upto_id,
                                  "COUNT", READ_BATCH)
                asked = True
            yield batch
    finally:
        if asked:  # left before the answer was read: the connection cannot be reused
            conn.disconnect()
        pool.release(conn)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def main() -> None:
    """A worker: check the segments given as JSON on stdin, answer their results on stdout."""
    # A worker's objects are freed by reference counting (a batch at a time, no cycles):
    # the collector's passes over the replies' lists would cost a tenth of its time.
    gc.disable()
    given = json.loads(sys.stdin.buffer.read())
    results = [check_segment(SegmentTask(**{**t, "witness": tuple(t["witness"])
                                            if t["witness"] else None})) for t in given]
    sys.stdout.write(json.dumps([dataclasses.asdict(r) for r in results]))


if __name__ == "__main__":
    main()
