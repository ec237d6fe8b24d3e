"""Task event fields keep state and names; results, tracebacks, messages and arguments go."""

from __future__ import annotations

from tasks.event_content import WITHHELD, exception_name, withhold_content


def test_a_succeeded_event_keeps_its_runtime_but_not_its_result() -> None:
    fields = {"uuid": "c1", "result": "{'sha256': 'abc123', 'path': '/srv/x'}", "runtime": 0.2}
    assert withhold_content(fields) == {"uuid": "c1", "result": WITHHELD, "runtime": 0.2}


def test_a_failed_event_keeps_the_exception_class_only() -> None:
    fields = {"uuid": "c1", "traceback": 'File "/srv/secret.py", line 3',
              "exception": "FileNotFoundError(2, 'No such file', '/srv/secret.txt')"}
    out = withhold_content(fields)
    assert out["exception"] == "FileNotFoundError"
    assert out["traceback"] == WITHHELD
    assert "secret" not in repr(out)


def test_exception_names_are_read_from_the_repr_only() -> None:
    assert exception_name("SoftTimeLimitExceeded()") == "SoftTimeLimitExceeded"
    assert exception_name("celery.exceptions.TimeLimitExceeded(65.0)") == (
        "celery.exceptions.TimeLimitExceeded")
    assert exception_name("WorkerLostError") == "WorkerLostError"
    assert exception_name("'/srv/secret.txt' is gone") == WITHHELD
    assert exception_name(None) == WITHHELD


def test_our_argsrepr_is_kept_any_other_arguments_are_withheld() -> None:
    ours = {"args": "<getfilehash 0f3a9c>", "kwargs": "{}"}
    assert withhold_content(ours) == ours
    forged = {"args": "[{'command': 'getfilehash', 'args': {'path': '/srv/x'}}]",
              "kwargs": "{'path': '/srv/x'}"}
    assert withhold_content(forged) == {"args": WITHHELD, "kwargs": WITHHELD}
    assert withhold_content({"args": "<getfilehash /srv/x>"})["args"] == WITHHELD


def test_events_without_content_pass_unchanged() -> None:
    heartbeat = {"type": "worker-heartbeat", "hostname": "lr-agent-a@h", "active": 0}
    assert withhold_content(heartbeat) == heartbeat
    assert withhold_content({"result": None, "traceback": ""}) == {"result": None,
                                                                    "traceback": ""}
