"""The agent's once-only ledger on disk: insert-or-fail, durable across reopen and fork, safe
across threads, pruned."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from tasks.errors import LedgerError
from worker_agent.ledger import CLOCK_SKEW_MARGIN_S, Ledger

NOW = 1_800_000_000.0


def test_a_command_id_is_claimed_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "d.sqlite3")
    assert ledger.claim("c1", NOW + 30, NOW)
    assert not ledger.claim("c1", NOW + 30, NOW + 1)
    assert ledger.claim("c2", NOW + 30, NOW + 1)


def test_claims_survive_a_new_ledger_on_the_same_file(tmp_path: Path) -> None:
    first = Ledger(tmp_path / "d.sqlite3")
    first.check()
    assert first.claim("c1", NOW + 30, NOW)
    first.close()
    again = Ledger(tmp_path / "d.sqlite3")
    assert again.contains("c1")
    assert not again.claim("c1", NOW + 30, NOW + 5)


def test_the_ledger_is_private_to_the_agents_account(tmp_path: Path) -> None:
    path = tmp_path / "ledger" / "d.sqlite3"
    Ledger(path).check()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_claim_is_kept_past_its_expiry_by_the_clock_margin_then_pruned(
        tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "d.sqlite3")
    assert ledger.claim("old", NOW + 30, NOW)
    assert ledger.prune(NOW + 30 + CLOCK_SKEW_MARGIN_S - 1) == 0
    assert not ledger.claim("old", NOW + 30, NOW + 30 + CLOCK_SKEW_MARGIN_S - 1)
    assert ledger.prune(NOW + 31 + CLOCK_SKEW_MARGIN_S) == 1
    assert not ledger.contains("old")


def test_claims_prune_what_has_passed_now_and_then(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "d.sqlite3", prune_interval_s=60)
    assert ledger.claim("old", NOW, NOW)
    assert ledger.claim("new", NOW + 10_000, NOW + 10_000)  # first claim: prunes
    assert not ledger.contains("old") and ledger.contains("new")


def test_pool_processes_share_the_ledger_each_with_its_own_connection(
        tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    ledger = Ledger(path)
    assert ledger.claim("parent", NOW + 30, NOW)  # the parent's connection, then a fork
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()

    def child() -> None:
        out.put((ledger.claim("parent", NOW + 30, NOW), ledger.claim("child", NOW + 30, NOW)))

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(timeout=20)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    assert proc.exitcode == 0
    assert out.get(timeout=5) == (False, True)
    assert not ledger.claim("child", NOW + 30, NOW)


def test_threads_racing_for_the_same_ids_claim_each_exactly_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "d.sqlite3")
    ids = [f"c{i}" for i in range(200)]
    wins: list[list[str]] = [[] for _ in range(4)]
    go = threading.Barrier(4)

    def claimer(won: list[str]) -> None:
        go.wait()
        won.extend(c for c in ids if ledger.claim(c, NOW + 30, NOW))

    threads = [threading.Thread(target=claimer, args=(won,)) for won in wins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(c for won in wins for c in won) == sorted(ids)


def test_an_unwritable_ledger_is_an_error_not_a_silent_run(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "file"  # root writes anywhere: use a path under a regular file
        blocked.write_text("")
        path = blocked / "d.sqlite3"
    else:
        tmp_path.chmod(0o500)
        path = tmp_path / "sub" / "d.sqlite3"
    with pytest.raises(LedgerError) as err:
        Ledger(path).check()
    assert err.value.code == "ledger_unavailable"
    with pytest.raises(LedgerError):
        Ledger(path).claim("c1", NOW + 30, NOW)
