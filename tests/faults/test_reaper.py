"""The reaper: a command whose waiter died still ends with a recorded, audited outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrator.commands.reaper as reaper_module
from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.reaper import Reaper
from orchestrator.commands.records import load_record
from orchestrator.state.identity import get_user
from tasks.signing import KeyPair
from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory, signing_keys: KeyPair
          ) -> Iterator[Stack]:
    with own_prefix_stack(redis_url, [new_device_id("reap")], tmp_path_factory.mktemp("reap"),
                          signing=signing_keys, transfer_stall_timeout_s=2.0,
                          transfer_window_chunks=1, transfer_chunk_bytes=4096) as st:
        yield st


def outcome_entries(stack: Stack, command_id: str) -> list[str]:
    return [e.action for e in stack.plane.audit.read(command=command_id)
            if e.action not in ("command.requested",)]


def submit_and_abandon(stack: Stack, line: str) -> str:
    """Submit as a request would, then never wait: the waiter 'died'."""
    device = next(iter(stack.agents))
    session = stack.open_session(device)
    admin = get_user(stack.plane.client, stack.plane.keys, "admin")
    return Dispatcher(stack.plane).submit(admin, session, line).command_id


def settle(stack: Stack, command_id: str, timeout_s: float = 20) -> None:
    """Sweep until the command's outcome is recorded."""
    reaper = Reaper(stack.plane)
    deadline = time.monotonic() + timeout_s
    while not load_record(stack.plane, command_id).outcome_recorded:
        assert time.monotonic() < deadline, load_record(stack.plane, command_id)
        reaper.sweep()
        time.sleep(0.3)


def test_an_abandoned_command_is_recorded_and_audited_once(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(reaper_module, "REAP_GRACE_S", 0.5)
    command_id = submit_and_abandon(stack, f"dir {tmp_path}")
    settle(stack, command_id)
    record = load_record(stack.plane, command_id)
    assert record.status.value == "completed" and record.result is not None
    Reaper(stack.plane).sweep()  # a second pass records nothing more
    assert outcome_entries(stack, command_id) == ["command.completed"]
    members = stack.plane.client.smembers(stack.plane.keys.open_commands)
    assert command_id.encode() not in members


def test_a_live_waiter_is_left_its_grace(stack: Stack, tmp_path: Path) -> None:
    command_id = submit_and_abandon(stack, f"dir {tmp_path}")
    time.sleep(1.5)  # the agent answered; a waiter would record it now
    assert Reaper(stack.plane).sweep() == 0
    assert not load_record(stack.plane, command_id).outcome_recorded


def test_a_getfile_whose_receiver_died_fails_as_transfer_lost(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(reaper_module, "REAP_GRACE_S", 0.5)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 200_000)
    command_id = submit_and_abandon(stack, f"getfile {big}")
    settle(stack, command_id, timeout_s=40)
    record = load_record(stack.plane, command_id)
    assert record.status.value == "failed"
    assert record.error is not None and record.error.code == "transfer_failed", record.error
    actions = outcome_entries(stack, command_id)
    assert "evidence.failed" in actions and actions[-1] == "command.failed"
    assert not stack.plane.client.exists(stack.plane.keys.xfer(command_id))
