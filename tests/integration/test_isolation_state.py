"""The isolation state in `lr:device:<id>`: recorded, shown, kept across agent restarts, cleared."""

from __future__ import annotations

import pytest
import redis

from orchestrator.policies.isolation import check_isolation
from orchestrator.state.devices import DeviceRegistry
from tasks import clock
from tasks.commands.network import NetstatArgs, NetstatResult
from tasks.errors import PermissionDeniedError, UnknownDeviceError, UsageError
from tasks.keys import Keys
from tasks.registry import REGISTRY, CommandSpec
from worker_agent.registration import register_device


@pytest.fixture
def registry(redis_client: redis.Redis, keys: Keys) -> DeviceRegistry:
    register_device(redis_client, keys, "web01")
    return DeviceRegistry(redis_client, keys, offline_after_s=60)


def test_isolation_is_recorded_with_mode_time_and_who(registry: DeviceRegistry) -> None:
    before = clock.now()
    device = registry.set_isolation("web01", "selective", "alice", ["192.0.2.7:443", "10.0.0.0/8"])
    assert device.isolation == "selective"
    assert device.isolated_by == "alice"
    assert device.isolated_since is not None and before <= device.isolated_since <= clock.now()
    assert device.isolation_allow == ["192.0.2.7:443", "10.0.0.0/8"]
    assert [d.isolation for d in registry.list()] == ["selective"]


def test_a_restarting_agent_keeps_the_isolation_state(
    registry: DeviceRegistry, redis_client: redis.Redis, keys: Keys
) -> None:
    registry.set_isolation("web01", "full", "alice")
    register_device(redis_client, keys, "web01")
    device = registry.get("web01")
    assert (device.isolation, device.isolated_by, device.isolation_allow) == ("full", "alice", [])


def test_release_clears_every_isolation_field(
    registry: DeviceRegistry, redis_client: redis.Redis, keys: Keys
) -> None:
    registry.set_isolation("web01", "selective", "alice", ["192.0.2.7"])
    device = registry.clear_isolation("web01")
    assert (device.isolation, device.isolated_since, device.isolated_by) == ("none", None, None)
    assert device.isolation_allow == []
    fields = redis_client.hgetall(keys.device("web01"))
    assert fields[b"isolation"] == b"none"
    assert not {b"isolated_since", b"isolated_by", b"isolation_allow"} & set(fields)
    assert fields[b"hostname"]  # the agent's own fields stay


def test_unknown_devices_and_modes_are_refused(
    registry: DeviceRegistry, redis_client: redis.Redis, keys: Keys
) -> None:
    with pytest.raises(UnknownDeviceError):
        registry.set_isolation("ghost", "full", "alice")
    with pytest.raises(UnknownDeviceError):
        registry.clear_isolation("ghost")
    assert not redis_client.exists(keys.device("ghost"))
    with pytest.raises(UsageError, match="unknown isolation mode 'partial'"):
        registry.set_isolation("web01", "partial", "alice")
    assert registry.get("web01").isolation == "none"


def test_while_isolated_only_marked_commands_pass_the_policy(registry: DeviceRegistry) -> None:
    unmarked = CommandSpec("probe", "x", NetstatArgs, NetstatResult, "live.read")
    check_isolation(registry.get("web01"), unmarked)  # not isolated: anything goes
    isolated = registry.set_isolation("web01", "full", "alice")
    with pytest.raises(PermissionDeniedError, match="'probe' is not allowed while isolated"):
        check_isolation(isolated, unmarked)
    for name in ("dir", "processes", "kill", "release"):
        check_isolation(isolated, REGISTRY[name])
    check_isolation(registry.clear_isolation("web01"), unmarked)
