"""Isolation for real: an agent inside a network namespace is cut off but for its broker.

The namespace reaches a Redis and a TCP server on the host's end of a veth pair. After
`isolate` the TCP server is out of reach while commands still flow over the broker; after
`release` it is reachable again. Agents without nft or without CAP_NET_ADMIN say so.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.main import main
from orchestrator.local.agents import LocalAgent
from tasks import clock
from tests.netns import Netns, redis_on, tcp_listener, unavailable_reason, veth_netns
from tests.stack import Stack, live_stack, new_device_id
from worker_agent.isolation import NO_PRIVILEGE, NOT_INSTALLED

pytestmark = pytest.mark.integration


@dataclass
class Lab:
    """The namespace, the stack on the namespace's Redis, and two TCP servers on the host."""

    ns: Netns
    stack: Stack
    port: int
    other_port: int
    tmp: Path

    def agent(self, device_id: str, *, wrapper: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> LocalAgent:
        """An agent (not started) running inside the namespace, trusting the stack's key."""
        return LocalAgent(device_id, self.stack.plane.settings.redis_url or "",
                          key_prefix=self.stack.plane.keys.prefix, concurrency=1,
                          log_path=self.tmp / f"agent-{device_id}.log",
                          env={"LR_LEDGER_DIR": str(self.tmp / "ledger"), **(env or {})},
                          public_key_file=self.stack.signing.public_path,
                          command_prefix=self.ns.exec_argv(*wrapper))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the API as the admin; the JSON answer."""
        with self.stack.client() as http:
            resp = http.post(path, json=body)
            assert resp.status_code == 200, resp.text
            answer: dict[str, Any] = resp.json()
            return answer

    def device(self, device_id: str) -> dict[str, Any]:
        with self.stack.client() as http:
            device: dict[str, Any] = http.get(f"/devices/{device_id}").json()
            return device

    def reachable(self, port: int | None = None) -> bool:
        return self.ns.can_connect(self.ns.host_addr, port or self.port)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("netns")
    with ExitStack() as stack:
        ns = stack.enter_context(veth_netns())
        url = stack.enter_context(redis_on(ns.host_addr, tmp / "redis"))
        port = stack.enter_context(tcp_listener(ns.host_addr))
        other_port = stack.enter_context(tcp_listener(ns.host_addr))
        st = stack.enter_context(live_stack(url, f"lrtest-{uuid.uuid4().hex[:10]}", [], tmp))
        yield Lab(ns, st, port, other_port, tmp)


@pytest.fixture(scope="module")
def device(lab: Lab) -> Iterator[str]:
    """A device whose agent runs inside the namespace as root."""
    device_id = new_device_id("iso")
    with lab.agent(device_id):
        yield device_id


@pytest.fixture
def released(lab: Lab, device: str) -> Iterator[str]:
    """The device, never left isolated by a test that fails half-way."""
    yield device
    lab.ns.run(shutil.which("nft") or "nft", "delete", "table", "inet", "liveresponse_isolation")
    lab.stack.plane.devices.clear_isolation(device)


def lr(lab: Lab, *args: str) -> Result:
    """Run `lr` as the stack's admin, isolated from the user's environment."""
    env = {"LR_DATA_DIR": str(lab.tmp / "lr-home"), "LR_API_URL": None, "LR_TOKEN": None}
    return CliRunner().invoke(main, ["--api-url", lab.stack.url, "--token", lab.stack.token,
                                     *args], env=env)


def test_isolate_cuts_the_namespace_off_but_the_broker_and_release_restores_it(
    lab: Lab, released: str
) -> None:
    device = released
    assert lab.reachable(), "before isolation the namespace must reach the test server"

    before = clock.now()
    isolated = lr(lab, "isolate", device)
    assert isolated.exit_code == 0, isolated.output
    assert "isolated (full)" in isolated.output
    assert lab.ns.has_isolation_table()
    assert not lab.reachable()

    state = lab.device(device)
    assert (state["isolation"], state["isolated_by"]) == ("full", "admin")
    assert before <= state["isolated_since"] <= clock.now()
    assert "full since" in lr(lab, "devices").output
    actions = [e.action for e in lab.stack.plane.audit.read(device=device)]
    assert "device.isolated" in actions

    # Commands still travel over the broker while the device is isolated.
    session = lab.stack.open_session(device)
    assert lab.stack.run(session, "dir /")["status"] == "completed"
    procs = lab.stack.run(session, "processes")
    assert procs["status"] == "completed" and procs["result"]["processes"]

    released_out = lr(lab, "release", device)
    assert released_out.exit_code == 0, released_out.output
    assert "released" in released_out.output
    assert not lab.ns.has_isolation_table()
    assert lab.reachable()
    state = lab.device(device)
    assert (state["isolation"], state["isolated_since"], state["isolated_by"]) == (
        "none", None, None)

    again = lr(lab, "--json", "release", device)
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["result"] == {"removed": False,
                                                  "table": "inet liveresponse_isolation"}


def test_selective_isolation_lets_through_only_the_allowed_destination(
    lab: Lab, released: str
) -> None:
    device = released
    allow = f"{lab.ns.host_addr}:{lab.port}"
    record = lab.post(f"/devices/{device}/isolate", {"mode": "selective", "allow": allow})
    assert record["status"] == "completed", record
    assert record["result"]["allowed"] == [allow]
    assert lab.reachable(lab.port)
    assert not lab.reachable(lab.other_port)
    assert lab.device(device)["isolation_allow"] == [allow]

    # Isolating again replaces the table: now nothing but the broker.
    record = lab.post(f"/devices/{device}/isolate", {"mode": "full", "allow": None})
    assert record["status"] == "completed", record
    assert not lab.reachable(lab.port)
    assert lab.device(device)["isolation"] == "full"

    assert lab.post(f"/devices/{device}/release", {})["result"]["removed"] is True
    assert lab.reachable(lab.other_port)


def test_isolating_a_critical_device_waits_for_a_second_admin(lab: Lab, released: str) -> None:
    device = released
    lab.stack.tag(device, "critical")
    try:
        held = lr(lab, "isolate", device)
        assert held.exit_code != 0, "held for approval is not isolated yet"
        command_id = _pending_id(lab, device)
        assert f"waiting for approval by another user: lr approve {command_id}" in held.output
        assert not lab.ns.has_isolation_table()
        assert lab.device(device)["isolation"] == "none"

        second = lab.stack.user(f"bob-{uuid.uuid4().hex[:6]}", ["admin"])
        with lab.stack.client(second) as http:
            approved = http.post(f"/commands/{command_id}/approve").json()
        assert approved["status"] == "completed", approved
        assert lab.ns.has_isolation_table()
        assert not lab.reachable()
        assert lab.device(device)["isolation"] == "full"
    finally:
        lab.stack.tag(device)


def _pending_id(lab: Lab, device: str) -> str:
    with lab.stack.client() as http:
        (record,) = [r for r in http.get("/approvals").json() if r["device_id"] == device]
    return str(record["command_id"])


def assert_refused_and_not_recorded(lab: Lab, device: str, message: str) -> None:
    for path, body in ((f"/devices/{device}/isolate", {"mode": "full"}),
                       (f"/devices/{device}/release", {})):
        record = lab.post(path, body)
        assert record["status"] == "failed", record
        assert record["error"]["code"] == "isolation_unavailable"
        assert record["error"]["message"] == message
        assert not lab.ns.has_isolation_table()
        assert lab.device(device)["isolation"] == "none"
    assert lab.reachable()


def test_an_agent_without_nft_says_to_install_it(lab: Lab) -> None:
    device = new_device_id("nonft")
    empty_bin = lab.tmp / f"empty-bin-{device}"
    empty_bin.mkdir()
    with lab.agent(device, env={"PATH": str(empty_bin)}):
        assert_refused_and_not_recorded(lab, device, NOT_INSTALLED)


def test_an_agent_without_cap_net_admin_says_it_lacks_the_privilege(lab: Lab) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot start an agent without "
                    "CAP_NET_ADMIN")
    device = new_device_id("nocap")
    with lab.agent(device, wrapper=(setpriv, "--bounding-set", "-net_admin")):
        assert_refused_and_not_recorded(lab, device, NO_PRIVILEGE)
