"""The evidence store's disk fills up during a `getfile`: the command fails saying the
orchestrator's disk is full and what to do, `evidence.failed` is audited, nothing half-written
is kept (the temp file is removed, so the space is free again) and the orchestrator goes on
serving. The store is a real, small tmpfs: the writes really fail with ENOSPC."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import new_device_id

#: Size of the tmpfs the evidence store lives on.
STORE_BYTES = 256 * 1024
#: The file collected: four times what the store holds.
BIG_BYTES = 4 * STORE_BYTES


def _used_bytes(mount: Path) -> int:
    """Bytes in use on the filesystem at `mount`, as df reports them (an independent tool)."""
    out = subprocess.run(["df", "--block-size=1", "--output=used", str(mount)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1])


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of STORE_BYTES mounted for this test; unmounted afterwards."""
    mount = tmp_path / "evidence"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STORE_BYTES},mode=0700",
                           "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def test_a_getfile_into_a_full_evidence_disk_fails_clearly_and_keeps_nothing(
        stack_factory, small_store: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    device = new_device_id("full")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG_BYTES))
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(STORE_BYTES // 4))
    with stack_factory([device], evidence_dir=small_store, transfer_chunk_bytes=16 * 1024,
                       transfer_window_chunks=2) as st:
        session = st.open_session(device)
        body = st.run(session, f"getfile {big}")

        assert body["status"] == "failed", body
        error = body["error"]
        assert error["code"] == "evidence_disk_full", error
        assert error["message"].startswith(
            f"the orchestrator's evidence disk is full ({small_store}): "), error
        assert "nothing was kept" in error["message"] and "\n" not in error["message"]
        assert "free space" in error["hint"] and "LR_EVIDENCE_DIR" in error["hint"]

        entries = st.plane.audit.read(command=body["command_id"])
        failed = [e for e in entries if e.action == "evidence.failed"]
        assert len(failed) == 1 and failed[0].details["reason"] == "evidence_disk_full"
        assert [e.action for e in entries][-1] == "command.failed"
        assert not [e for e in entries if e.action == "evidence.stored"]
        # Nothing half-kept: no object, no temp file; the space is free again.
        assert list((small_store / "tmp").iterdir()) == []
        assert not (small_store / "sha256").exists() or not any(
            (small_store / "sha256").rglob("*"))
        assert _used_bytes(small_store) < STORE_BYTES // 4
        assert not st.plane.client.exists(st.plane.keys.xfer(body["command_id"]))

        # The orchestrator goes on serving: a file that fits is stored, checked by sha256sum.
        stored = st.run(session, f"getfile {small}")
        assert stored["status"] == "completed", stored
        sha256 = subprocess.run(["sha256sum", str(small)], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        assert stored["result"]["evidence_sha256"] == sha256
        assert (small_store / "sha256" / sha256[:2] / sha256).read_bytes() == small.read_bytes()
