"""The agent's remote control table and its log filter, checked without a worker."""

from __future__ import annotations

import logging

from celery.app import trace
from celery.worker.control import Panel

from tasks.cancel import CANCEL_CONTROL, CancelOrder, cancel_order
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
