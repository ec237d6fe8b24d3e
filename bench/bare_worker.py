"""The baseline: a bare Celery app and task that hashes a file, with Celery's defaults plus JSON."""

from __future__ import annotations

import hashlib
import os

from celery import Celery

from tasks.app import celery_url

_url = celery_url(os.environ["LR_REDIS_URL"])
app = Celery("bare", broker=_url, backend=_url)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="bare.hash")
def hash_file(path: str) -> str:
    """sha256 of a file, streamed, as our getfilehash does."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
