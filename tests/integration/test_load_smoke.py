"""`bench/load.py` stays runnable: a few seconds of a few sessions on real agents pass its
own checks (no error, no lost result, each command audited once requested and once done)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LOAD_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "load.py"


def test_a_short_load_run_completes_every_command_and_audits_each_once(redis_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(LOAD_SCRIPT), "--seconds", "3", "--sessions", "3", "--devices", "2"],
        env={**os.environ, "LR_REDIS_URL": redis_url}, capture_output=True, text=True,
        timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "errors: 0; records or audit entries wrong: 0" in proc.stdout
    assert "load: OK" in proc.stdout
    assert "latency (ms): p50" in proc.stdout


def test_the_load_script_refuses_a_nonsense_duration_before_starting_anything() -> None:
    proc = subprocess.run([sys.executable, str(LOAD_SCRIPT), "--seconds", "0"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--seconds must be positive" in proc.stderr
