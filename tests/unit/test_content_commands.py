"""cat, head, tail, strings and hexdump on real files, compared with coreutils, binutils and
util-linux (`cat`, `head -n`, `tail -n`, `strings -a -n`, `od`, `hexdump -C`, `sha256sum`)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from orchestrator.cli.render_evidence import hexdump_lines, render_cat
from tasks.commands import content as ct
from tasks.errors import NotAFileError, SecretFileError, UsageError
from tasks.parsing import parse_line
from worker_agent.content import run_cat, run_head, run_hexdump, run_strings, run_tail
from worker_agent.context import CommandContext
from worker_agent.hashing import CHUNK_BYTES

CTX = CommandContext(device_id="dev-content")


def tool(*argv: str) -> bytes:
    return subprocess.run(argv, capture_output=True, check=True).stdout


def sha256sum(path: Path) -> str:
    return tool("sha256sum", str(path)).split()[0].decode()


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    """Text, bytes that are not UTF-8, control characters, a last line without newline."""
    path = tmp_path / "sample.bin"
    path.write_bytes(b"first line\n\x7fELF\x02\x01\x00\x00 payload\tv2\n" + os.urandom(3000)
                     + b"\nhello from the tail\r\n\xff\xfe last\n" + b"no newline at the end")
    return path


def test_cat_returns_the_bytes_cat_prints_with_their_sha256(binary: Path) -> None:
    result = run_cat(ct.CatArgs(path=str(binary)), CTX)
    assert result.encoding == "base64"
    assert result.content() == tool("cat", str(binary))
    assert result.sha256 == result.file_sha256 == sha256sum(binary)
    assert not result.cut


def test_cat_cut_at_max_bytes_still_hashes_the_whole_file(binary: Path) -> None:
    result = run_cat(ct.CatArgs(path=str(binary), max_bytes=100), CTX)
    assert result.content() == tool("head", "-c", "100", str(binary))
    assert result.returned_bytes == 100 and result.cut
    assert result.file_sha256 == sha256sum(binary)
    assert "(cut: raise --max-bytes)" in render_cat(result)[-1]


def test_cat_of_utf8_text_travels_as_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("grüße\tà tous\n")
    result = run_cat(ct.CatArgs(path=str(path)), CTX)
    assert (result.encoding, result.data) == ("utf-8", "grüße\tà tous\n")
    assert render_cat(result)[0] == "grüße\tà tous"


@pytest.mark.parametrize("lines", [1, 3, 5, 1000])
def test_head_and_tail_return_what_head_n_and_tail_n_print(binary: Path, lines: int) -> None:
    head = run_head(ct.HeadArgs(path=str(binary), lines=lines), CTX)
    assert head.content() == tool("head", "-n", str(lines), str(binary))
    assert head.offset == 0 and head.file_sha256 == sha256sum(binary)
    tail = run_tail(ct.TailArgs(path=str(binary), lines=lines), CTX)
    assert tail.content() == tool("tail", "-n", str(lines), str(binary))
    assert tail.offset == binary.stat().st_size - tail.returned_bytes
    assert not head.cut and not tail.cut


def test_tail_of_a_file_ending_in_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(50)))
    result = run_tail(ct.TailArgs(path=str(path), lines=3), CTX)
    assert result.content() == tool("tail", "-n", "3", str(path)) == b"line 47\nline 48\nline 49\n"
    assert result.lines == 3


def test_tail_of_one_line_longer_than_the_cap_returns_its_last_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(b"x" * 100 + os.urandom(ct.CONTENT_MAX_BYTES).replace(b"\n", b"n")
                     + b"end")
    result = run_tail(ct.TailArgs(path=str(path), lines=1), CTX)
    assert result.cut and result.returned_bytes == ct.CONTENT_MAX_BYTES
    assert result.content() == tool("tail", "-c", str(ct.CONTENT_MAX_BYTES), str(path))


def test_strings_finds_what_strings_finds_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "implant"
    # A run that straddles the agent's read chunk, short runs, tabs, and a run at the very end.
    body = bytearray(os.urandom(CHUNK_BYTES + 4096))
    body[CHUNK_BYTES - 6:CHUNK_BYTES + 6] = b"\x00C2:evil.io\x00"
    body[100:120] = b"\x00ab\x00abcd\x00\tTAB\tx\x00"
    path.write_bytes(bytes(body) + b"\x00/tmp/.x/beacon")
    for shortest in (4, 8):
        result = run_strings(ct.StringsArgs(path=str(path), min=shortest), CTX)
        listing = tool("strings", "-a", "-n", str(shortest), str(path))
        assert b"".join(s.text.encode() + b"\n" for s in result.strings) == listing
        with_offsets = tool("strings", "-a", "-t", "d", "-n", str(shortest), str(path))
        assert [(s.offset, s.text) for s in result.strings] == [
            (int(off), text) for off, _, text in
            (line.decode().lstrip().partition(" ") for line in with_offsets.splitlines())]
        assert result.file_sha256 == sha256sum(path)
        piped = subprocess.run(["sha256sum"], input=listing, capture_output=True, check=True)
        assert result.sha256 == piped.stdout.split()[0].decode()
    assert "C2:evil.io" in [s.text for s in result.strings]


def test_hexdump_returns_the_range_od_reads(binary: Path) -> None:
    result = run_hexdump(ct.HexdumpArgs(path=str(binary), offset=10, length=45), CTX)
    od = tool("od", "-A", "n", "-t", "x1", "-v", "-j", "10", "-N", "45", str(binary))
    assert result.content() == bytes.fromhex(od.decode().replace("\n", " "))
    assert result.offset == 10 and result.file_sha256 == sha256sum(binary)


def test_hexdump_is_drawn_as_hexdump_c_draws_it(binary: Path) -> None:
    result = run_hexdump(ct.HexdumpArgs(path=str(binary), offset=7, length=77), CTX)
    expected = tool("hexdump", "-C", "-v", "-s", "7", "-n", "77", str(binary))
    assert hexdump_lines(result.content(), result.offset) == expected.decode().splitlines()


def test_hexdump_past_the_end_is_cut(binary: Path) -> None:
    size = binary.stat().st_size
    result = run_hexdump(ct.HexdumpArgs(path=str(binary), offset=size - 5, length=100), CTX)
    assert result.content() == binary.read_bytes()[-5:] and result.cut


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            run_cat(ct.CatArgs(path=str(fifo)), CTX)
        except NotAFileError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert outcome and "fifo" in str(outcome[0])


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotAFileError, match="is a directory"):
        run_head(ct.HeadArgs(path=str(tmp_path)), CTX)


def test_the_shadow_file_is_refused_even_through_a_link(tmp_path: Path) -> None:
    if not os.path.exists("/etc/shadow"):
        pytest.skip("this system has no /etc/shadow")
    link = tmp_path / "innocent.txt"
    link.symlink_to("/etc/shadow")
    for run, args in ((run_cat, ct.CatArgs), (run_strings, ct.StringsArgs),
                      (run_hexdump, ct.HexdumpArgs)):
        with pytest.raises(SecretFileError, match="password hashes"):
            run(args(path=str(link)), CTX)  # type: ignore[operator]


def test_relative_paths_resolve_in_the_session_cwd(binary: Path) -> None:
    ctx = CommandContext(device_id="dev-content", cwd=str(binary.parent))
    assert run_cat(ct.CatArgs(path=binary.name), ctx).path == str(binary)


@pytest.mark.parametrize(("line", "problem"), [
    ("cat", "missing PATH"),
    ("cat /x --max-bytes 2000000", "less than or equal to 1048576"),
    ("head /x -n 5", "unexpected argument(s): -n 5"),
    ("tail /x --lines 0", "greater than or equal to 1"),
    ("hexdump /x --offset -1", "greater than or equal to 0"),
    ("strings /x --min lots", "bad value for min"),
])
def test_bad_lines_are_usage_errors_that_show_the_usage(line: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_line(line)
    assert problem in caught.value.message
    assert caught.value.hint is not None and caught.value.hint.startswith("usage: ")


def test_head_with_a_short_option_points_at_the_usage_and_its_lines_option() -> None:
    with pytest.raises(UsageError) as caught:
        parse_line("head /x -n 5")
    assert caught.value.message == ("head: unexpected argument(s): -n 5 (options are written "
                                    "in full with --: see the usage)")
    assert caught.value.hint == "usage: head PATH [--lines LINES]"


def test_a_low_output_limit_caps_the_bytes_so_the_result_still_fits(binary: Path) -> None:
    ctx = CommandContext(device_id="dev-content", output_max_bytes=8192)
    result = run_cat(ct.CatArgs(path=str(binary), max_bytes=ct.CONTENT_MAX_BYTES), ctx)
    assert result.cut and result.content() == binary.read_bytes()[:result.returned_bytes]
    assert len(result.model_dump_json()) <= 8192
    dump = run_hexdump(ct.HexdumpArgs(path=str(binary), length=ct.CONTENT_MAX_BYTES), ctx)
    assert dump.cut and len(dump.model_dump_json()) <= 8192


def test_a_hard_link_to_the_shadow_file_is_refused_too(tmp_path: Path) -> None:
    if not os.path.exists("/etc/shadow") or os.stat("/etc/shadow").st_dev != os.stat(
            tmp_path).st_dev:
        pytest.skip("no /etc/shadow on the filesystem of the test's directory")
    link = tmp_path / "copy"
    try:
        os.link("/etc/shadow", link)
    except OSError as exc:
        pytest.skip(f"cannot hard-link /etc/shadow here: {exc}")
    try:
        with pytest.raises(SecretFileError):
            run_head(ct.HeadArgs(path=str(link)), CTX)
    finally:
        link.unlink()


def test_a_file_over_the_whole_read_limit_is_read_only_where_asked(
        binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker_agent.content.WHOLE_READ_MAX_BYTES", 1000)
    tail = run_tail(ct.TailArgs(path=str(binary), lines=2), CTX)
    assert tail.content() == tool("tail", "-n", "2", str(binary))
    dump = run_hexdump(ct.HexdumpArgs(path=str(binary), offset=2000, length=64), CTX)
    assert dump.content() == binary.read_bytes()[2000:2064]
    cat = run_cat(ct.CatArgs(path=str(binary), max_bytes=10), CTX)
    assert cat.content() == b"first line"
    strings = run_strings(ct.StringsArgs(path=str(binary)), CTX)
    assert strings.scanned_bytes == 1000 and strings.cut
    assert (tail.file_sha256, dump.file_sha256, cat.file_sha256, strings.file_sha256) == (
        None, None, None, None)
