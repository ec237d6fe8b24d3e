"""`lr playbook ...` as an analyst drives it, against a live stack and a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.main import main
from tests.e2e.cli import Lr, cli_env, ok
from tests.run_worker import RunWorkerProcess
from tests.stack import Stack

TRIAGE = Path(__file__).resolve().parents[2] / "playbooks" / "triage.yml"


@pytest.fixture
def worker(stack: Stack, tmp_path: Path) -> Iterator[RunWorkerProcess]:
    with RunWorkerProcess(stack, tmp_path / "worker.log") as w:
        yield w


def test_validate_names_the_step_and_field_and_needs_no_orchestrator(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\nsteps:\n  - {id: collect, line: 'getfil /tmp/x'}\n")
    result = CliRunner().invoke(main, ["playbook", "validate", str(bad)], env=cli_env(tmp_path))
    assert result.exit_code == 2, result.output
    assert "step 'collect' (line): unknown command 'getfil'" in result.output
    good = CliRunner().invoke(main, ["playbook", "validate", str(TRIAGE)], env=cli_env(tmp_path))
    assert ok(good).output.startswith("triage: valid (3 steps")


def test_run_waits_shows_progress_and_the_runs_list_and_show_it(
        lr: Lr, stack: Stack, device_id: str, worker: RunWorkerProcess) -> None:
    result = ok(lr("playbook", "run", str(TRIAGE), "--device", device_id))
    assert f"triage on {device_id}" in result.output and ": completed" in result.output
    assert "STEP" in result.output and "processes --tree" in result.output
    runs = json.loads(ok(lr("--json", "playbook", "runs")).output)
    (run,) = runs
    assert (run["playbook"], run["device_id"], run["status"]) == ("triage", device_id,
                                                                  "completed")
    shown = json.loads(ok(lr("--json", "playbook", "show", run["run_id"])).output)
    assert [s["id"] for s in shown["steps"]] == ["processes", "netstat", "persistence"]
    assert all(c["command_id"] for s in shown["steps"] for c in s["commands"])
    started = json.loads(ok(lr("--json", "playbook", "run", str(TRIAGE), "--devices",
                               device_id, "--no-wait")).output)
    assert [r["status"] for r in started] == ["queued"]
    missing = lr("playbook", "show", "Rnope")
    assert missing.exit_code == 5 and "unknown playbook run" in missing.output
