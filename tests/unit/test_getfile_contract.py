"""getfile in the contract: its registry entry, its line, and the transfer stream's entries."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from orchestrator.policies.isolation import check_isolation
from orchestrator.state.devices import Device
from tasks.commands.acquisition import GetFileArgs
from tasks.errors import UsageError
from tasks.parsing import parse_line
from tasks.registry import PERM_COLLECT, REGISTRY
from tasks.transfer import (
    KIND_BEGIN,
    KIND_CHUNK,
    KIND_END,
    KIND_ERROR,
    begin_fields,
    chunk_fields,
    end_fields,
    error_fields,
    parse_entry,
)


def _wire(fields: Mapping[str, object]) -> dict[bytes, bytes]:
    """Fields as Redis hands them back: bytes keys and values."""
    out = {}
    for key, value in fields.items():
        raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        out[key.encode()] = raw
    return out


def test_getfile_needs_collect_sends_a_file_and_has_a_long_time_limit() -> None:
    spec = REGISTRY["getfile"]
    assert spec.permission == PERM_COLLECT == "live.collect"
    assert spec.sends_file and not spec.destructive
    assert spec.time_limit(60.0) >= 3600
    assert spec.args_model is GetFileArgs


def test_getfile_runs_on_an_isolated_device() -> None:
    spec = REGISTRY["getfile"]
    assert spec.allowed_while_isolated
    isolated = Device(id="d1", online=True, last_seen=None, isolation="full")
    check_isolation(isolated, spec)  # raises if not allowed


def test_the_line_cannot_set_the_size_limit() -> None:
    spec, args = parse_line("getfile '/tmp/a file.bin'")
    assert spec.name == "getfile"
    assert args == GetFileArgs(path="/tmp/a file.bin")
    with pytest.raises(UsageError, match="unknown option '--max-bytes'"):
        parse_line("getfile /tmp/x --max-bytes 99999999999")
    with pytest.raises(UsageError, match="missing PATH"):
        parse_line("getfile")


def test_stream_entries_round_trip() -> None:
    begin = parse_entry(_wire(begin_fields(10, 4, "/a", "/b", 12.5)))
    assert (begin.kind, begin.size_bytes, begin.chunk_bytes, begin.path, begin.resolved_path,
            begin.mtime) == (KIND_BEGIN, 10, 4, "/a", "/b", 12.5)
    chunk = parse_entry(_wire(chunk_fields(8, memoryview(b"\x00\xffab"))))
    assert (chunk.kind, chunk.offset, chunk.data) == (KIND_CHUNK, 8, b"\x00\xffab")
    end = parse_entry(_wire(end_fields(10, "f" * 64, 3)))
    assert (end.kind, end.size_bytes, end.sha256, end.chunks) == (KIND_END, 10, "f" * 64, 3)
    error = parse_entry(_wire(error_fields("file_changed", "x" * 2000)))
    assert (error.kind, error.code, len(error.message)) == (KIND_ERROR, "file_changed", 500)


@pytest.mark.parametrize(("raw", "problem"), [
    ({b"kind": b"what"}, "unknown transfer entry kind"),
    ({b"kind": b"chunk", b"offset": b"1"}, "without its 'data' field"),
    ({b"kind": b"chunk", b"offset": b"-1", b"data": b"x"}, "negative offset"),
    ({b"kind": b"end", b"size_bytes": b"x", b"sha256": b"a", b"chunks": b"1"}, "invalid literal"),
])
def test_malformed_entries_are_refused(raw: dict[bytes, bytes], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_entry(raw)
