"""`lr run --devices`, `lr batch`, `lr devices` filters, as an analyst drives them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.cli import Lr, ok
from tests.integration.test_fleet_batches import register_offline
from tests.stack import Stack, purge_device_queue


def test_run_on_devices_prints_one_row_per_device_and_exits_by_the_worst(
        lr: Lr, stack: Stack, device_id: str, tmp_path: Path) -> None:
    subject = tmp_path / "ioc.bin"
    subject.write_bytes(b"not good " * 100)
    expected = subprocess.run(["sha256sum", str(subject)], capture_output=True, text=True,
                              check=True).stdout.split()[0]
    stack.tag(device_id, "group:web")
    offline = register_offline(stack, "group:web")
    try:
        result = lr("--json", "run", "--devices", "tag:group:web", "--expires", "2s",
                    f"getfilehash {subject}")
    finally:
        purge_device_queue(stack.plane, offline)
    # The offline device's command expired: not every device completed.
    assert result.exit_code == 16, result.output
    records = {r["device"]: r for r in json.loads(result.stdout)}
    assert set(records) == {device_id, offline}
    assert records[device_id]["status"] == "completed"
    assert records[device_id]["result"]["sha256"] == expected
    assert records[offline]["status"] == "expired"
    assert records[offline]["command_id"]

    table = ok(lr("run", "--devices", device_id, f"getfilehash {subject}")).output
    lines = table.splitlines()
    assert lines[1].split()[:3] == ["DEVICE", "STATUS", "SUMMARY"]
    assert lines[2].split()[:2] == [device_id, "completed"]
    assert expected in lines[2]


def test_batches_can_be_listed_shown_and_cancelled(lr: Lr, stack: Stack) -> None:
    offline = register_offline(stack)
    try:
        started = lr("--json", "batch", "list")
        ok(started)
        before = {b["id"] for b in json.loads(started.stdout)}
        batch = stack.client().post("/batches", json={"selector": offline, "line": "dir /",
                                                      "expires_s": 600}).json()
        listed = json.loads(ok(lr("--json", "batch", "list")).stdout)
        assert batch["id"] in {b["id"] for b in listed} - before
        shown = ok(lr("batch", "show", batch["id"])).output
        assert offline in shown and "queued" in shown
        cancelled = ok(lr("batch", "cancel", batch["id"])).output
        assert f"cancelled on 1 devices ({offline})" in cancelled
        final = lr("--json", "batch", "show", "--wait", batch["id"])
        assert final.exit_code == 16
        assert [r["status"] for r in json.loads(final.stdout)] == ["cancelled"]
    finally:
        purge_device_queue(stack.plane, offline)


def test_a_bad_selector_is_one_clear_line(lr: Lr) -> None:
    result = lr("run", "--devices", "tag:nosuch", "dir /")
    assert result.exit_code == 5
    assert "no registered device carries tag 'nosuch'" in result.output
    assert "Traceback" not in result.output
    result = lr("run", "--devices", "x", "--expires", "soon", "dir /")
    assert result.exit_code == 2
    assert "invalid duration 'soon'" in result.output


def test_devices_filter_by_tag_and_liveness_and_show_version_and_sessions(
        lr: Lr, stack: Stack, device_id: str) -> None:
    stack.tag(device_id, "group:dmz")
    offline = register_offline(stack, "group:dmz")
    session = stack.open_session(device_id)
    rows = json.loads(ok(lr("--json", "devices", "--tag", "group:dmz")).stdout)
    assert {d["id"] for d in rows} == {device_id, offline}
    live = {d["id"]: d for d in rows}[device_id]
    assert live["open_sessions"] == 1 and live["agent_version"]
    offline_rows = json.loads(ok(lr("--json", "devices", "--offline")).stdout)
    assert offline in {d["id"] for d in offline_rows}
    assert device_id not in {d["id"] for d in offline_rows}
    online_rows = json.loads(ok(lr("--json", "devices", "--online")).stdout)
    assert {d["id"] for d in online_rows} >= {device_id}
    assert offline not in {d["id"] for d in online_rows}
    table = ok(lr("devices", "--tag", "group:dmz")).output
    assert "AGENT" in table and "SESSIONS" in table
    assert session


def test_opening_a_session_on_an_offline_device_says_so(lr: Lr, stack: Stack) -> None:
    offline = register_offline(stack)
    result = ok(lr("session", "open", offline))
    assert f"warning: device {offline} is offline" in result.output
