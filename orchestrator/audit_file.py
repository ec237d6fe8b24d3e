"""The audit export file (JSON Lines): writing it from the stream, and verifying it offline.

Line 1 is a header, every further line one stored entry, oldest first; see docs/audit.md.
Verification reads the file line by line (constant memory) and needs no Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.audit import GENESIS, AuditLog, AuditVerdict, ChainSnapshot, ChainWalk
from orchestrator.audit_checkpoint import checkpoint_problem, parse_checkpoint
from tasks import clock
from tasks.errors import UsageError

if TYPE_CHECKING:
    from tasks.signing import Verifier

#: The `format` of the header line this version writes and reads.
EXPORT_FORMAT = "liveresponse-audit/1"
#: Longest line the verifier reads; a stored entry is far smaller.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Keys of a line that are not stored fields of the entry.
LINE_KEYS = ("type", "id")


def export_lines(log: AuditLog, snap: ChainSnapshot) -> Iterator[str]:
    """The export of the chain as `snap` saw it: a header, then each entry, one per line."""
    yield _line({
        "type": "header",
        "format": EXPORT_FORMAT,
        "exported_at": float(clock.now()),
        "entries": snap.entries,
        # A missing head with entries present stays missing: the verifier reports it.
        "head": snap.head or (GENESIS if snap.newest_id is None else ""),
        "checkpoint": json.loads(snap.checkpoint) if snap.checkpoint else None,
    })
    if snap.newest_id is None:
        return
    # Fields exactly as stored (ts and details as text), so hashes are recomputed byte for byte.
    for entry_id, fields in log.scan(upto=snap.newest_id):
        yield _line({"type": "entry", "id": entry_id, **fields})


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n"


def verify_file(path: Path, load_verifier: Callable[[], Verifier | None]) -> AuditVerdict:
    """Check an export offline: its checkpoint, every entry's hash and link, count and head.

    `load_verifier` is called only when the file holds a checkpoint; when it returns None
    the check cannot be made and UsageError says to pass the orchestrator's public key.
    """
    with path.open("rb") as stream:
        return _verify_stream(stream, load_verifier)


def _verify_stream(stream: IO[bytes], load_verifier: Callable[[], Verifier | None]) -> AuditVerdict:
    lines = _numbered_lines(stream)
    header, header_problem = _read_header(next(lines, None))
    if header is None:
        return AuditVerdict(ok=False, entries=0, head="", problem=header_problem, line=1)
    problem: str | None
    head = header["head"]
    announced: int = header["entries"]
    walk = ChainWalk(GENESIS)
    trimmed = 0

    def fail(problem: str, line: int, entry_id: str | None) -> AuditVerdict:
        return AuditVerdict(ok=False, entries=walk.entries, head=head, problem=problem,
                            entry_id=entry_id, trimmed=trimmed, line=line)

    if header["checkpoint"] is not None:
        try:
            checkpoint = parse_checkpoint(header["checkpoint"])
        except ValueError as exc:
            return fail(f"header: {exc}", 1, None)
        verifier = load_verifier()
        if verifier is None:
            raise UsageError(
                "this export holds a signed checkpoint (the chain was trimmed), and no public "
                "key was found to check it",
                hint="pass --public-key with the orchestrator's orchestrator-signing.pub",
            )
        problem = checkpoint_problem(checkpoint, verifier)
        if problem:
            return fail(f"header: {problem}", 1, checkpoint.anchor_id)
        walk = ChainWalk(checkpoint.anchor)
        trimmed = checkpoint.removed
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
    problem = walk.head_problem(head)
    if problem:
        return fail(problem, last_line, walk.last_id)
    return AuditVerdict(ok=True, entries=walk.entries, head=head, trimmed=trimmed)


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
    if header.get("format") != EXPORT_FORMAT:
        return None, (
            f"unknown format {header.get('format')!r} (this lr reads {EXPORT_FORMAT})"
        )
    entries, head, checkpoint = header.get("entries"), header.get("head"), header.get("checkpoint")
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        return None, "header field 'entries' is not a count (altered)"
    if not isinstance(head, str) or not head:
        return None, "header field 'head' is missing (altered)"
    if "checkpoint" not in header:
        return None, "header field 'checkpoint' is missing (altered)"
    if checkpoint is not None and not isinstance(checkpoint, dict):
        return None, "header field 'checkpoint' is neither an object nor null (altered)"
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
