"""How `lr-agent` chooses its pool: threads by default, prefork on request, a bad choice said
plainly (no traceback, exit 2)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tasks.queues import queue_for
from worker_agent.main import main, worker_argv


def _pool_of(argv: list[str]) -> str:
    return argv[argv.index("--pool") + 1]


def test_the_worker_runs_the_threads_pool_unless_prefork_is_asked_for() -> None:
    argv = worker_argv("d1", 2, "INFO")
    assert _pool_of(argv) == "threads"
    assert argv[argv.index("--queues") + 1] == queue_for("d1")
    assert argv[argv.index("--concurrency") + 1] == "2"
    assert _pool_of(worker_argv("d1", 3, "INFO", "prefork")) == "prefork"


@pytest.mark.parametrize(("env", "args", "expected"), [
    ({"LR_AGENT_POOL": "forked"}, [],
     "lr-agent: bad setting: LR_AGENT_POOL: Input should be 'threads' or 'prefork'"),
    ({}, ["--pool", "forked"], "Invalid value for '--pool'"),
    ({}, ["--concurrency", "0"], "Invalid value for '--concurrency'"),
])
def test_a_bad_pool_or_concurrency_is_refused_with_a_clear_message(
        env: dict[str, str], args: list[str], expected: str) -> None:
    result = CliRunner().invoke(main, ["--device-id", "d1", *args],
                                env={"LR_REDIS_URL": "redis://127.0.0.1:1/0", **env})
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
