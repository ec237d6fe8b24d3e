"""The agent's remote control table and its log filter, checked without a worker."""

from __future__ import annotations

import logging
from pathlib import Path

from celery.app import trace
from celery.utils.saferepr import saferepr
from celery.worker.control import Panel

from config import Settings
from tasks.cancel import CANCEL_CONTROL, CancelOrder, cancel_order
from tasks.registry import REGISTRY
from tasks.signing import generate_keypair
from worker_agent.app import build_agent_app
from worker_agent.quiet_log import HideTaskResults
from worker_agent.remote_control import AGENT_PANEL

#: Read-only inspection an agent answers (everything else Celery knows is refused).
READ_ONLY = {"ping", "clock", "heartbeat", "stats", "registered", "active_queues", "active",
             "reserved", "scheduled", "query_task", "revoked"}


def test_the_agent_answers_read_only_inspection_and_the_signed_cancel_only() -> None:
    assert set(AGENT_PANEL) == READ_ONLY | {CANCEL_CONTROL}
    changing = {"shutdown", "pool_restart", "pool_grow", "pool_shrink", "autoscale",
                "add_consumer", "cancel_consumer", "rate_limit", "time_limit", "revoke",
                "revoke_by_stamped_headers", "terminate", "enable_events", "disable_events",
                "election", "conf", "report", "hello", "objgraph", "memdump", "memsample"}
    assert changing <= set(Panel.data)  # the names are Celery's own
    assert not changing & set(AGENT_PANEL)


def test_a_cancel_order_signs_its_kind_with_the_rest() -> None:
    order = cancel_order("c1", "d1", 100.0)
    assert order.expires_at > order.issued_at == 100.0
    assert b'"kind":"cancel"' in order.canonical_bytes()
    assert b"signature" not in order.canonical_bytes()
    assert CancelOrder.model_validate(order.model_dump(mode="json")) == order


def test_celerys_success_line_loses_the_result_and_keeps_the_rest() -> None:
    context = {"id": "c1", "name": "lr.command.dir", "return_value": "{'sha256': 'abc'}",
               "runtime": 0.01, "args": "<dir c1>", "kwargs": "{}"}
    record = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1,
                               trace.LOG_SUCCESS, (context,), None)
    record.data = context
    assert HideTaskResults().filter(record)
    assert record.getMessage() == "Task lr.command.dir[c1] succeeded in 0.01s"
    assert "return_value" not in record.data


def test_celery_renders_no_repr_of_a_commands_result(tmp_path: Path) -> None:
    """Celery builds a repr of each return value for its success line and event, both of
    which the agent drops; a large listing's repr cost more than the command itself."""
    keys = generate_keypair(tmp_path / "keys")
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", key_prefix="lr-repr-test",
                        orchestrator_public_key_file=keys.public_path,
                        ledger_dir=tmp_path / "ledger")
    app = build_agent_app("repr-dev", settings)
    listing = {"status": "completed", "result": {"entries": [
        {"name": f"file{i}", "size": i} for i in range(5000)]}}
    commands = [t for name, t in app.tasks.items() if name.startswith("lr.command.")]
    assert len(commands) == len(REGISTRY)
    for task in commands:
        shown = saferepr(listing, task.resultrepr_maxsize)
        assert "file" not in shown and len(shown) < 10, (task.name, shown)
