"""Every `make bench` script stays runnable on a small run, on the embedded Redis a newcomer
without LR_REDIS_URL gets (its socket must outlive each script's own clean-up), printing its
figure next to its baseline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.throwaway_redis import ThrowawayRedis

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


def _run_small(script: str, args: list[str], figure: str,
               env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `script` small with `env`; it must succeed and print `figure`."""
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], env=env,
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert figure in proc.stdout, proc.stdout
    return proc


@pytest.mark.parametrize(("script", "args", "figure"), SMALL_RUNS,
                         ids=[run[0] for run in SMALL_RUNS])
def test_a_small_run_on_the_embedded_redis_prints_its_figure_and_cleans_up_cleanly(
        script: str, args: list[str], figure: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LR_REDIS_URL"}
    proc = _run_small(script, args, figure, env)
    assert "Traceback" not in proc.stderr, proc.stderr


#: kombu's own table of expiring bindings, one per Redis, kept by every kombu client.
KOMBU_GLOBAL_KEYS = {"_kombu.binding_deadlines"}


@pytest.mark.parametrize(("script", "args", "figure"),
                         [run for run in SMALL_RUNS if run[0] != "audit.py"],
                         ids=[run[0] for run in SMALL_RUNS if run[0] != "audit.py"])
def test_a_run_on_a_redis_it_was_given_leaves_no_key_behind(
        script: str, args: list[str], figure: str, tmp_path: Path) -> None:
    """Queues, kombu binding sets, task results, records: a benchmark pointed at a shared
    Redis (LR_REDIS_URL) deletes everything it created there."""
    server = ThrowawayRedis(tmp_path / "redis")
    server.start()
    try:
        _run_small(script, args, figure, {**os.environ, "LR_REDIS_URL": server.url})
        left = {key.decode() for key in redis.Redis.from_url(server.url).keys("*")}
        assert left <= KOMBU_GLOBAL_KEYS, sorted(left)[:20]
    finally:
        server.stop()
