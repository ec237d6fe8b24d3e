"""Every `make bench` script stays runnable on a small run, on the embedded Redis a newcomer
without LR_REDIS_URL gets (its socket must outlive each script's own clean-up), printing its
figure next to its baseline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"

#: Script, small arguments, and a line its figures must hold.
SMALL_RUNS = [
    ("roundtrip.py", ["-n", "5"], "p50 ratio ours/bare"),
    ("dispatch.py", ["--devices", "5", "--commands", "50", "--scales", "5"], "ratio ours/bare"),
    ("footprint.py", ["--settle", "0.5", "--idle", "0.5"], "agent RSS / bare"),
    ("getfile.py", ["--mb", "2"], "ratio ours/bare"),
    ("fanout.py", ["--devices", "10", "--repeat", "1"], "speed-up ours vs bare"),
    ("audit.py", ["--rounds", "1", "--per-round", "5", "--chain", "500"], "bare line dump"),
]


@pytest.mark.parametrize(("script", "args", "figure"), SMALL_RUNS,
                         ids=[run[0] for run in SMALL_RUNS])
def test_a_small_run_on_the_embedded_redis_prints_its_figure_and_cleans_up_cleanly(
        script: str, args: list[str], figure: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LR_REDIS_URL"}
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], env=env,
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert figure in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
