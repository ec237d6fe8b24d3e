"""A command's first reads travel in one round trip, and still count at once: a revoked token,
changed grants or a closed session are refused on the very next command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.policies.checks import reads_of
from orchestrator.policies.model import Grant
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import hash_token, revoke_token, set_grants
from orchestrator.state.reads import MAX_HINTS, ReadHints
from tasks.signing import KeyPair
from tests.stack import Stack, new_device_id, own_prefix_stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys: KeyPair) -> Iterator[Stack]:
    device = new_device_id("reads")
    with own_prefix_stack(redis_url, [device], tmp_path_factory.mktemp("reads"),
                          signing=signing_keys, command_expiry_s=3.0) as st:
        yield st


def _device(stack: Stack) -> str:
    return next(iter(stack.agents))


def test_after_one_command_the_next_reads_its_four_keys_in_one_pipeline(stack: Stack) -> None:
    token = stack.user("reader1", ["responder"])
    session = stack.open_session(_device(stack), token)
    assert stack.run(session, "dir /", token)["status"] == "completed"
    req = Request(stack.plane, target=session, token=token, session_id=session)
    fetched = reads_of(req)._fetched  # noqa: SLF001 - what the one round trip brought
    keys = stack.plane.keys
    assert set(fetched) == {keys.token(hash_token(token)), keys.user("reader1"),
                            keys.session(session), keys.device(_device(stack))}


def test_a_revoked_token_is_refused_on_the_next_command(stack: Stack) -> None:
    token = stack.user("reader2", ["responder"])
    session = stack.open_session(_device(stack), token)
    assert stack.run(session, "dir /", token)["status"] == "completed"
    assert revoke_token(stack.plane.client, stack.plane.keys, token)
    refused = stack.run(session, "dir /", token)
    assert refused["error"]["code"] == "unauthenticated", refused
    assert "unknown API token" in refused["error"]["message"]


def test_grants_taken_away_count_on_the_next_command(stack: Stack) -> None:
    token = stack.user("reader3", ["responder"])
    session = stack.open_session(_device(stack), token)
    assert stack.run(session, "dir /", token)["status"] == "completed"
    set_grants(stack.plane.client, stack.plane.keys, "reader3", [Grant(role="viewer")])
    refused = stack.run(session, "dir /", token)
    assert refused["error"]["code"] == "permission_denied", refused


def test_a_closed_session_is_refused_on_the_next_command(stack: Stack) -> None:
    session = stack.open_session(_device(stack))
    assert stack.run(session, "dir /")["status"] == "completed"
    with stack.client() as http:
        assert http.delete(f"/sessions/{session}").status_code == 200
    refused = stack.run(session, "dir /")
    assert refused["error"]["code"] == "session_closed", refused


def test_a_wrong_hint_costs_a_read_not_a_wrong_answer(stack: Stack) -> None:
    plane = stack.plane
    hints = ReadHints(plane.client, plane.keys, size=2)
    session = stack.open_session(_device(stack))
    hints.learn_device(session, "some-other-device")
    reads = hints.prefetch(None, session)
    # The check asks for the session's real device: read then, not taken from the hint.
    assert plane.devices.get(_device(stack), reads).id == _device(stack)
    for n in range(5):
        hints.learn_device(f"S{n:08x}", "d")
    assert hints.sizes() == (0, 2) and MAX_HINTS >= 1024
