"""Every HTTP route declares its check in code, and the declared pipelines run in one order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route

from config import Settings
from orchestrator.api.app import create_app
from orchestrator.api.guard import route_check
from orchestrator.plane import ControlPlane
from orchestrator.policies import checks
from orchestrator.policies.pipeline import names
from tasks.signing import KeyPair


@pytest.fixture
def plane(redis_url: str, key_prefix: str, signing_keys: KeyPair,
          tmp_path: Path) -> Iterator[ControlPlane]:
    cfg = Settings(redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path,
                   signing_key_file=signing_keys.private_path)
    p = ControlPlane.from_settings(cfg)
    yield p
    p.close()


def test_every_route_declares_its_check(plane: ControlPlane) -> None:
    app = create_app(plane)
    # Plain routes too (the command route is one); FastAPI's own docs routes are not served
    # in the schema and hold no data.
    routes = [r for r in app.routes if isinstance(r, Route) and r.include_in_schema]
    assert len(routes) > 20
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in routes if route_check(r) is None]
    assert undeclared == []


def test_reads_name_the_device_they_are_scoped_to(plane: ControlPlane) -> None:
    declared = {(m, r.path): route_check(r) for r in create_app(plane).routes
                if isinstance(r, Route) and r.methods for m in r.methods}
    assert declared[("GET", "/commands/{command_id}")] == "view on command"
    assert declared[("GET", "/sessions/{session_id}")] == "view on session"
    assert declared[("GET", "/sessions/{session_id}/jobs")] == "view on session"
    assert declared[("GET", "/devices/{device_id}")] == "view on device"
    assert declared[("GET", "/audit/export")] == "view on everywhere"
    assert declared[("GET", "/health")].startswith("open: ")
    assert declared[("POST", "/users")] == "admin"
    assert declared[("POST", "/sessions/{session_id}/commands")].startswith("authenticated")


def test_the_command_pipeline_runs_its_checks_in_the_declared_order() -> None:
    assert names(checks.COMMAND.checks) == [
        "authenticate", "session_usable", "parse_command", "expiry_allowed", "command_id_unused",
        "load_device", "authorize_command", "isolation_allows", "approval_rule",
        "prepare_arguments"]
    # A fleet command checks once what holds for all its devices, then each device with the
    # same device checks as a session's command.
    assert names(checks.FLEET.checks) == [
        "authenticate", "parse_command", "fleet_command", "expiry_allowed", "prepare_arguments"]
    assert names(checks.FLEET_DEVICE.checks) == [
        "may_run_without_session", "authorize_command", "isolation_allows", "approval_rule"]
    # Approve and deny check what the command itself checked, in the same order.
    assert names(checks.APPROVE.checks)[:7] == names(checks.DENY.checks)
    assert "authorize_command" in names(checks.cancel_job(1).checks)
    assert names(checks.CANCEL_COMMAND.checks)[-2:] == ["load_device", "authorize_command"]
