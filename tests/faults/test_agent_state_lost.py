"""What an agent's heartbeat repairs or reports when the world changed under it: Redis lost
the device's record (it registers again), or its isolation table vanished (it says so)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.state.identity import create_user, issue_token
from tasks.signing import KeyPair
from tests.integration.test_isolation_netns import Lab, lr
from tests.netns import redis_on, tcp_listener, unavailable_reason, veth_netns
from tests.stack import live_stack, new_device_id

#: Agents in these tests beat this often.
BEAT_S = 0.5
#: How long a heartbeat has to notice.
NOTICE_WITHIN_S = 5.0


def _wait_for(probe: Any, timeout_s: float = NOTICE_WITHIN_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_an_agent_registers_again_after_redis_lost_everything(
        tmp_path: Path, signing_keys: KeyPair) -> None:
    device = new_device_id("wiped")
    # A Redis of this test's own: wiping it touches nobody else.
    with redis_on("127.0.0.1", tmp_path / "redis") as url, \
            live_stack(url, "lr", [device], tmp_path, signing=signing_keys,
                       heartbeat_interval_s=BEAT_S) as st:
        client = redis.Redis.from_url(url)
        assert client.sismember(st.plane.keys.devices, device)

        client.flushall()  # the state is gone: users, tokens, devices
        admin = create_user(st.plane.client, st.plane.keys, "admin", ["admin"])
        token = issue_token(st.plane.client, st.plane.keys, admin)

        def listed() -> bool:
            with st.client(token) as http:
                return device in [d["id"] for d in http.get("/devices").json()]

        assert _wait_for(listed), "the running agent never registered again"
        with st.client(token) as http:
            state = http.get(f"/devices/{device}").json()
        assert state["online"] and state["hostname"] and state["registered_at"]
        # And it is reachable again: a command goes all the way.
        session = st.open_session(device, token)
        body = st.run(session, "dir /", token)
        assert body["status"] == "completed", body


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("netns-truth")
    with ExitStack() as stack:
        ns = stack.enter_context(veth_netns())
        url = stack.enter_context(redis_on(ns.host_addr, tmp / "redis"))
        port = stack.enter_context(tcp_listener(ns.host_addr))
        other_port = stack.enter_context(tcp_listener(ns.host_addr))
        st = stack.enter_context(live_stack(url, f"lrtest-{uuid.uuid4().hex[:10]}", [], tmp))
        yield Lab(ns, st, port, other_port, tmp)


def test_a_flushed_isolation_table_shows_as_missing_until_isolated_again(lab: Lab) -> None:
    nft = shutil.which("nft") or "nft"
    device = new_device_id("truth")
    with lab.agent(device, env={"LR_HEARTBEAT_INTERVAL_S": str(BEAT_S)}):
        try:
            assert lr(lab, "isolate", device).exit_code == 0
            assert lab.device(device)["isolation_table"] == "in_place"
            time.sleep(3 * BEAT_S)  # beats that find it in place keep saying so
            assert lab.device(device)["isolation_table"] == "in_place"
            assert not lab.reachable()

            # Flushed behind the agent's back (or the endpoint rebooted): not isolated.
            done = lab.ns.run(nft, "delete", "table", "inet", "liveresponse_isolation")
            assert done.returncode == 0, done.stderr
            assert lab.reachable()
            assert _wait_for(lambda: lab.device(device)["isolation_table"] == "missing")
            shown = lr(lab, "devices")
            assert "TABLE MISSING: not isolated" in shown.output, shown.output
            assert lab.device(device)["isolation"] == "full"  # still treated as isolated

            assert lr(lab, "isolate", device).exit_code == 0
            assert lab.device(device)["isolation_table"] == "in_place"
            assert not lab.reachable()
            assert lr(lab, "release", device).exit_code == 0
            assert "isolation_table" not in {k for k, v in lab.device(device).items() if v}
        finally:
            lab.ns.run(nft, "delete", "table", "inet", "liveresponse_isolation")
            lab.stack.plane.devices.clear_isolation(device)
