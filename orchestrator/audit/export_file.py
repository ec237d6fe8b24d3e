"""The audit export file (JSON Lines): writing it from the stream, and verifying it offline.

Line 1 is a header signed by the orchestrator (the count, head, newest id, checkpoint and
witness of the snapshot exported), every further line one stored entry, oldest first; see
docs/audit.md. Verification reads the file line by line (constant memory) and needs no Redis,
only the orchestrator's public key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.audit.checkpoint import Checkpoint, checkpoint_problem, parse_checkpoint
from orchestrator.audit.keys import TrustedKeys
from orchestrator.audit.log import GENESIS, AuditLog, AuditVerdict, ChainSnapshot, ChainWalk
from orchestrator.audit.walk import SIGNED_LAYOUT, UNSIGNED_LAYOUT
from orchestrator.audit.witness import STREAM_ID, WitnessMark, parse_mark
from tasks import clock
from tasks.auditchain import to_canonical_json
from tasks.errors import LiveResponseError, UsageError

if TYPE_CHECKING:
    from tasks.signing import Verifier

#: The `format` of the header line this version writes and reads.
EXPORT_FORMAT = "liveresponse-audit/2"
#: The format of exports written before headers and entries were signed.
UNSIGNED_FORMAT = "liveresponse-audit/1"
#: Longest line the verifier reads; a stored entry is far smaller.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Keys of a line that are not stored fields of the entry.
LINE_KEYS = ("type", "id")
#: JSON string encoding, ASCII only (what `_line` writes for each str).
_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def export_lines(log: AuditLog, snap: ChainSnapshot) -> Iterator[str]:
    """The export of the chain as `snap` saw it: a signed header, then each entry, one per line,
    in chunks of whole lines, one chunk per XRANGE batch (`audit.segments.READ_BATCH`).

    `log` must hold the orchestrator's signer: the header is signed before any line is sent.
    """
    if log.signer is None:
        raise LiveResponseError("an export is signed, and this audit log has no signing key")
    header: dict[str, Any] = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "exported_at": float(clock.now()),
        "entries": snap.entries,
        # A missing head with entries present stays missing: the verifier reports it.
        "head": snap.head or (GENESIS if snap.newest_id is None else ""),
        "newest_id": snap.newest_id,
        "checkpoint": json.loads(snap.checkpoint) if snap.checkpoint else None,
        "witness": snap.witness.to_json() if snap.witness else None,
        "key_id": log.signer.key_id,
    }
    header["signature"] = log.signer.sign_bytes(header_signed_bytes(header))
    yield _line(header)
    if snap.newest_id is None:
        return
    # Fields exactly as stored (ts and details as text), so hashes are recomputed byte for byte.
    for batch in log.scan_batches(upto=snap.newest_id):
        yield "".join([_flat_line(entry_id, flat) for entry_id, flat in batch])


def entry_line(entry_id: str, fields: dict[str, str]) -> str:
    """The export line of one stored entry: what `_line` writes for it, built directly."""
    parts = ['{"type":"entry","id":', _json_str(entry_id)]
    for name, value in fields.items():
        parts += [",", _json_str(name), ":", _json_str(value)]
    parts.append("}\n")
    return "".join(parts)


def _flat_line(entry_id: str, flat: list[str]) -> str:
    """`entry_line` of an entry as XRANGE returns it (id, [name, value, ...])."""
    names = flat[0::2]
    if names == _LAYOUTS.get(len(flat)):
        return _LINE_OF_LAYOUT[len(flat)] % (_json_str(entry_id), *map(_json_str, flat[1::2]))
    it = iter(flat)
    return entry_line(entry_id, dict(zip(it, it, strict=True)))


def _line_template(names: list[str]) -> str:
    """`entry_line` of an entry whose fields are `names`, in order, with each value (the
    id's first) left as a %s to fill with its JSON string."""
    return '{"type":"entry","id":%s' + "".join(f",{_json_str(n)}:%s" for n in names) + "}\n"


#: The layouts an appender writes (an orchestrator's entry, an agent's) by the length of an
#: entry's [name, value, ...] list, and the template of their lines (`_line_template`).
_LAYOUTS = {len(names) * 2: names for names in (SIGNED_LAYOUT, UNSIGNED_LAYOUT)}
_LINE_OF_LAYOUT = {size: _line_template(names) for size, names in _LAYOUTS.items()}


def header_signed_bytes(header: dict[str, Any]) -> bytes:
    """What a header's signature covers: canonical JSON of every field but `signature`."""
    return to_canonical_json({k: v for k, v in header.items() if k != "signature"}).encode()


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n"


def verify_file(
    path: Path, load_keys: Callable[[], Verifier | TrustedKeys | None]
) -> AuditVerdict:
    """Check an export offline: its signed header, checkpoint, every entry's hash, link and
    signature, the count, the newest id, the head, and the witnessed entry.

    `load_keys` gives the orchestrator's public key (and any it retired); when it returns
    None nothing can be checked and UsageError says to pass the key.
    """
    with path.open("rb") as stream:
        return _verify_stream(stream, load_keys)


def _verify_stream(
    stream: IO[bytes], load_keys: Callable[[], Verifier | TrustedKeys | None]
) -> AuditVerdict:
    lines = _numbered_lines(stream)
    header, header_problem = _read_header(next(lines, None))
    if header is None:
        return AuditVerdict(ok=False, entries=0, head="", problem=header_problem, line=1)
    problem: str | None
    head = header["head"]
    announced: int = header["entries"]
    walk = ChainWalk()
    trimmed = 0

    def fail(problem: str, line: int, entry_id: str | None) -> AuditVerdict:
        return AuditVerdict(ok=False, entries=walk.entries, head=head, problem=problem,
                            entry_id=entry_id, trimmed=trimmed, line=line)

    keys = TrustedKeys.of(load_keys())
    if keys is None:
        raise UsageError(
            "an export's header and entries are signed, and no public key was found to "
            "check them",
            hint="pass --public-key with the orchestrator's orchestrator-signing.pub",
        )
    problem = _signature_problem(header, keys)
    if problem:
        return fail(f"header: {problem}", 1, None)
    checkpoint: Checkpoint | None = None
    if header["checkpoint"] is not None:
        try:
            checkpoint = parse_checkpoint(header["checkpoint"])
        except ValueError as exc:
            return fail(f"header: {exc}", 1, None)
        problem = checkpoint_problem(checkpoint, keys)
        if problem:
            return fail(f"header: {problem}", 1, checkpoint.anchor_id)
        trimmed = checkpoint.removed
    witness: WitnessMark | None = None
    if header["witness"] is not None:
        try:
            witness = parse_mark(header["witness"])
        except ValueError as exc:
            return fail(f"header: witness is malformed: {exc} (altered)", 1, None)
    walk = ChainWalk(keys, checkpoint=checkpoint, witness=witness)
    problem = walk.start_problem()
    if problem:
        return fail(problem, 1, witness.id if witness else None)
    last_line = 1
    for number, raw, complete in lines:
        last_line = number
        entry_id, fields, problem = _read_entry(raw, complete)
        if problem is None and walk.entries >= announced:
            problem = f"more entries than the {announced} the header announces (lines added)"
        if problem is None:
            problem = walk.step(entry_id or "", fields)
        if problem:
            return fail(problem, number, entry_id)
    if walk.entries < announced:
        return fail(
            f"the file ends after {walk.entries} of the {announced} entries its header "
            "announces (truncated)",
            last_line, walk.last_id,
        )
    if walk.last_id != header["newest_id"]:
        return fail(
            f"the last entry is {walk.last_id}, not {header['newest_id']}, the newest the "
            "header announces (altered)",
            last_line, walk.last_id,
        )
    problem = walk.head_problem(head)
    if problem:
        return fail(problem, last_line, walk.last_id)
    return AuditVerdict(ok=True, entries=walk.entries, head=head, trimmed=trimmed,
                        witness_id=witness.id if witness else None)


def _signature_problem(header: dict[str, Any], keys: TrustedKeys) -> str | None:
    """Why the header's signature does not hold with `keys`; None when it does."""
    verifier = keys.get(header["key_id"])
    if verifier is None:
        return (
            f"signed by key {header['key_id']!r}, not by a key given ({keys.describe()}): "
            "forged, or checked with the wrong public key"
        )
    if not verifier.verify_bytes(header_signed_bytes(header), header["signature"]):
        return (
            "signature does not verify: the header was altered (a count, head or newest id "
            "rewritten to hide dropped or added lines), or forged"
        )
    return None


def _numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without the newline, whether the newline was there)."""
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        complete = raw.endswith(b"\n")
        yield number, raw.rstrip(b"\n"), complete


def _read_header(item: tuple[int, bytes, bool] | None) -> tuple[dict[str, Any] | None, str]:
    """The header of line 1 with its fields checked, or None and what is wrong with it."""
    if item is None:
        return None, "the file is empty (not an audit export)"
    _, raw, _complete = item
    try:
        header = json.loads(raw)
    except ValueError:
        return None, "not valid JSON (not an audit export, or altered)"
    if not isinstance(header, dict) or header.get("type") != "header":
        return None, 'not an audit export header ({"type": "header", ...})'
    if header.get("format") == UNSIGNED_FORMAT:
        return None, (
            f"an unsigned export ({UNSIGNED_FORMAT}, written before exports were signed): "
            "lines dropped from its end cannot be told apart; export the chain again"
        )
    if header.get("format") != EXPORT_FORMAT:
        return None, (
            f"unknown format {header.get('format')!r} (this lr reads {EXPORT_FORMAT})"
        )
    entries, head, checkpoint = header.get("entries"), header.get("head"), header.get("checkpoint")
    newest_id = header.get("newest_id")
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        return None, "header field 'entries' is not a count (altered)"
    if not isinstance(head, str) or not head:
        return None, "header field 'head' is missing (altered)"
    for name in ("checkpoint", "witness", "newest_id"):
        if name not in header:
            return None, f"header field {name!r} is missing (altered)"
    if checkpoint is not None and not isinstance(checkpoint, dict):
        return None, "header field 'checkpoint' is neither an object nor null (altered)"
    if newest_id is not None and not (
        isinstance(newest_id, str) and STREAM_ID.fullmatch(newest_id)
    ):
        return None, "header field 'newest_id' is neither a stream id nor null (altered)"
    for name in ("key_id", "signature"):
        if not isinstance(header.get(name), str) or not header[name]:
            return None, f"header field {name!r} is missing: the header is not signed (altered)"
    return header, ""


def _read_entry(raw: bytes, complete: bool) -> tuple[str | None, dict[str, str], str | None]:
    """(entry id, stored fields, problem) of one entry line."""
    if len(raw) > MAX_LINE_BYTES:
        return None, {}, f"longer than {MAX_LINE_BYTES} bytes (not an audit entry)"
    try:
        obj = json.loads(raw)
    except ValueError:
        if not complete:
            return None, {}, "cut off before its end (the file is truncated)"
        return None, {}, "not valid JSON (altered)"
    if not isinstance(obj, dict) or obj.get("type") != "entry":
        return None, {}, 'not an audit entry ({"type": "entry", ...}) (altered)'
    entry_id = obj.get("id")
    if not isinstance(entry_id, str) or not entry_id:
        return None, {}, "entry without an id (altered)"
    fields = {k: v for k, v in obj.items() if k not in LINE_KEYS}
    wrong = sorted(k for k, v in fields.items() if not isinstance(v, str))
    if wrong:
        return entry_id, {}, f"entry {entry_id}: fields {wrong} are not text as stored (altered)"
    return entry_id, fields, None
