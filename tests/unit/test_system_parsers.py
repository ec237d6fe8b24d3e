"""The pure parts of the system state and evidence commands: size ranges, /proc parsers,
redaction, history tails, the memory dump's trailer and the streamed transfer entry."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tasks.commands.memory import read_memdump_manifest, trailer
from tasks.errors import PathNotFoundError
from tasks.sizes import in_range, parse_size, parse_size_range
from tasks.times import parse_point_in_time
from tasks.transfer import begin_fields, parse_entry
from tests.privilege import run_as_nobody
from worker_agent.collect import expand, plan
from worker_agent.interfaces import parse_routes_v4, parse_routes_v6, prefix_length
from worker_agent.memdump import parse_maps
from worker_agent.system_state import parse_modules, parse_mounts
from worker_agent.user_traces import parse_environ, read_tail, redact


@pytest.mark.parametrize("text, bytes_", [("0", 0), ("4096", 4096), ("4k", 4096),
                                          ("10M", 10 * 2**20), ("2g", 2 * 2**30)])
def test_sizes_take_binary_units(text: str, bytes_: int) -> None:
    assert parse_size(text) == bytes_


@pytest.mark.parametrize("text, inside, outside", [
    ("+10M", [10 * 2**20 + 1], [10 * 2**20, 0]),
    ("-4k", [0, 4095], [4096]),
    ("1k..1M", [1024, 2**20], [1023, 2**20 + 1]),
    ("..1k", [0, 1024], [1025]),
    ("512", [512], [511, 513]),
])
def test_size_ranges_bound_as_documented(text: str, inside: list[int],
                                         outside: list[int]) -> None:
    bounds = parse_size_range(text)
    assert all(in_range(n, bounds) for n in inside)
    assert not any(in_range(n, bounds) for n in outside)


@pytest.mark.parametrize("text, problem", [("10Q", "invalid size range"), ("-0", "nothing"),
                                           ("2M..1M", "is empty"), ("", "invalid size range")])
def test_bad_size_ranges_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_size_range(text)


def test_modules_are_parsed_with_users_refcount_and_taint() -> None:
    text = ("nft_chain_nat 12288 3 - Live 0x0000000000000000\n"
            "nf_nat 61440 2 nft_chain_nat,xt_MASQUERADE, Live 0x0000000000000000\n"
            "hidden 16384 - - Loading 0xffffffffc0000000 (OE)\n")
    mods = parse_modules(text)
    assert [(m.name, m.size_bytes, m.refcount, m.users, m.state, m.taint) for m in mods] == [
        ("nft_chain_nat", 12288, 3, [], "Live", ""),
        ("nf_nat", 61440, 2, ["nft_chain_nat", "xt_MASQUERADE"], "Live", ""),
        ("hidden", 16384, None, [], "Loading", "OE")]


def test_mount_fields_have_the_kernels_escapes_decoded() -> None:
    (mount,) = parse_mounts(r"/dev/sdb1 /media/my\040disk vfat rw,uid=1000 0 0" + "\n")
    assert mount.target == "/media/my disk"
    assert mount.options == ["rw", "uid=1000"]


def test_routes_are_read_as_ip_route_shows_them() -> None:
    v4 = ("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
          "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
          "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
          "eth1\t0000000A\t00000000\t0000\t0\t0\t0\t000000FF\t0\t0\t0\n")
    assert [(r.destination, r.gateway, r.interface, r.metric) for r in parse_routes_v4(v4)] == [
        ("default", "192.0.2.1", "eth0", 100), ("192.0.2.0/24", None, "eth0", 0)]
    v6 = ("fd000000000000000000000000000000 40 " + "0" * 32 + " 00 " + "0" * 32
          + " 00000100 00000001 00000000 00000001     eth0\n"
          + "0" * 32 + " 00 " + "0" * 32 + " 00 fd000000000000000000000000000001"
          " 00000400 00000002 00000000 00000003     eth0\n"
          "00000000000000000000000000000001 80 " + "0" * 32 + " 00 " + "0" * 32
          + " 00000000 00000002 00000000 80200001       lo\n"
          "ff000000000000000000000000000000 08 " + "0" * 32 + " 00 " + "0" * 32
          + " 00000100 00000001 00000000 00000001     eth0\n")
    assert [(r.destination, r.gateway, r.metric) for r in parse_routes_v6(v6)] == [
        ("fd00::/64", None, 256), ("default", "fd00::1", 1024)]


@pytest.mark.parametrize("mask, length", [("255.255.255.0", 24), ("255.0.0.0", 8),
                                          ("ffff:ffff:ffff:ffff::", 64), ("::", 0)])
def test_prefix_lengths_of_netmasks(mask: str, length: int) -> None:
    assert prefix_length(mask) == length


@pytest.mark.parametrize("name, value, shown", [
    ("GITHUB_TOKEN", "ghp_x", "<redacted>"), ("MYSQL_PWD", "p", "<redacted>"),
    ("db_password", "x", "<redacted>"), ("SSH_AUTH_SOCK", "/tmp/s", "<redacted>"),
    ("PWD", "/home/alice", "/home/alice"), ("KEYBOARD", "us", "<redacted>"),
    ("REDIS_URL", "redis://:s3@cache:6379/0", "redis://:<redacted>@cache:6379/0"),
    ("HOMEPAGE", "https://example.org/a:b@c", "https://example.org/a:b@c"),
])
def test_secret_looking_names_and_url_passwords_are_redacted(name: str, value: str,
                                                             shown: str) -> None:
    variable = redact(name, value)
    assert variable.value == shown
    assert variable.redacted is (shown != value)


def test_environ_is_split_on_nul_and_keeps_equals_in_values() -> None:
    got = parse_environ(b"A=1\0B=x=y\0EMPTY=\0\0")
    assert [(v.name, v.value) for v in got] == [("A", "1"), ("B", "x=y"), ("EMPTY", "")]


@pytest.mark.parametrize("content", [b"", b"one", b"one\n", b"a\nb\nc\n", b"a\n\nb",
                                     b"x" * 3000 + b"\n" + b"y\n" * 40, b"\xff\xfe\n\n"])
def test_history_tail_equals_tail_and_counts_lines(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "hist"
    path.write_bytes(content)
    _, count, lines = read_tail(path, 5)
    tail = subprocess.run(["tail", "-n", "5", str(path)], capture_output=True, check=True)
    assert lines == tail.stdout.decode(errors="replace").splitlines()
    assert count == content.count(b"\n") + (1 if content and not content.endswith(b"\n") else 0)


def test_history_lines_are_cut_at_a_bound(tmp_path: Path) -> None:
    path = tmp_path / "hist"
    path.write_bytes(b"z" * 100_000 + b"\nshort\n")
    _, count, lines = read_tail(path, 2)
    assert count == 2 and lines[1] == "short"
    assert lines[0] == "z" * 4096 + "…"


def test_a_memdump_manifest_is_read_back_from_its_trailer() -> None:
    manifest = json.dumps({"pid": 5, "regions": []}).encode()
    dump = io.BytesIO(b"\x00" * 100 + manifest + trailer(len(manifest)))
    assert read_memdump_manifest(dump) == {"pid": 5, "regions": []}
    with pytest.raises(ValueError, match="no memory dump trailer"):
        read_memdump_manifest(io.BytesIO(b"\x00" * 100))


def test_maps_lines_are_parsed_with_and_without_a_path() -> None:
    maps = parse_maps("55d0-55e0 r--p 00000000 08:01 12 /usr/bin/my prog\n"
                      "7ff0-7ff8 rw-p 00000000 00:00 0 \n")
    assert [(m.start, m.end, m.perms, m.path) for m in maps] == [
        (0x55d0, 0x55e0, "r--p", "/usr/bin/my prog"), (0x7ff0, 0x7ff8, "rw-p", "")]


def test_a_streamed_begin_entry_says_so_and_a_plain_one_does_not() -> None:
    def parsed(fields: dict[str, object]) -> bool:
        return parse_entry({k.encode(): str(v).encode() for k, v in fields.items()}).streamed

    assert parsed(begin_fields(100, 10, "/x", None, 1.0, streamed=True)) is True
    assert parsed(begin_fields(100, 10, "/x", None, 1.0)) is False


def test_collect_lists_a_directory_it_may_not_list_and_still_archives_it() -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        root.chmod(0o755)
        (root / "open.txt").write_text("x")
        (root / "open.txt").chmod(0o644)
        (root / "locked").mkdir(mode=0o700)
        (root / "locked/inside").write_text("y")

        def attempt() -> str:
            entries, skipped = plan([root])
            return json.dumps([[str(p) for p, _ in entries],
                               [s.model_dump() for s in skipped]])

        entries, skipped = json.loads(run_as_nobody(attempt) if os.geteuid() == 0
                                      else attempt())
    assert entries == [str(root), str(root / "locked"), str(root / "open.txt")]
    assert skipped == [{"path": str(root / "locked"), "type": "dir",
                        "reason": "directory could not be listed: Permission denied"}]


@pytest.mark.parametrize("text, epoch", [
    ("@1700000000", 1_700_000_000.0), ("2h", 1_000_000.0 - 7200),
    ("2023-11-14T22:13:20Z", 1_700_000_000.0), ("2023-11-14 23:13:20+01:00", 1_700_000_000.0),
])
def test_points_in_time_from_durations_iso_times_and_epochs(text: str, epoch: float) -> None:
    assert parse_point_in_time(text, now=1_000_000.0) == epoch


def test_a_naive_iso_time_is_the_local_time_date_reads() -> None:
    local = subprocess.run(["date", "-d", "@1700000000", "+%Y-%m-%d %H:%M:%S"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert parse_point_in_time(local, now=0.0) == 1_700_000_000.0
    with pytest.raises(ValueError, match="invalid time 'yesterday'"):
        parse_point_in_time("yesterday", now=0.0)


def test_collect_expands_a_glob_and_takes_a_name_that_only_looks_like_one(
        tmp_path: Path) -> None:
    for name in ("a.log", "b.log", "report[1].pdf"):
        (tmp_path / name).write_text(name)
    assert expand(tmp_path / "*.log") == [tmp_path / "a.log", tmp_path / "b.log"]
    assert expand(tmp_path / "report[1].pdf") == [tmp_path / "report[1].pdf"]
    with pytest.raises(PathNotFoundError, match="nothing matches"):
        expand(tmp_path / "*.exe")
