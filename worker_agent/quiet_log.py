"""Keep command results out of the agent's log: results hold evidence, logs travel far."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.app import trace

#: Celery's success line without the task's return value.
SUCCESS_WITHOUT_RESULT = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"


class HideTaskResults(logging.Filter):
    """Rewrites Celery's "Task … succeeded in …: <result>" record to leave the result out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == trace.LOG_SUCCESS and isinstance(record.args, dict):
            record.msg = SUCCESS_WITHOUT_RESULT
            record.args = {k: v for k, v in record.args.items() if k != "return_value"}
            data = getattr(record, "data", None)
            if isinstance(data, dict):  # the same context, handed to structured handlers
                record.data = {k: v for k, v in data.items() if k != "return_value"}
        return True


class HideTaskResultsStep(bootsteps.Step):
    """Worker step: installs the filter when an agent's worker is built, before its pool forks,
    so only a process that runs an agent is affected."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        logger = logging.getLogger(trace.__name__)
        if not any(isinstance(f, HideTaskResults) for f in logger.filters):
            logger.addFilter(HideTaskResults())
