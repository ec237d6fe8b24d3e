"""The Redis a benchmark measures on (LR_REDIS_URL, else a private embedded one) and how to
name it in the figures it prints."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from config import EmbeddedRedis


def bench_redis(stack: ExitStack, data_dir: Path, url: str | None = None) -> tuple[str, str]:
    """`url` (default: LR_REDIS_URL), else an embedded Redis in `data_dir` that `stack` stops;
    with a line saying which it is."""
    url = url if url is not None else os.environ.get("LR_REDIS_URL")
    if url:
        return url, f"Redis server at {url}"
    embedded = stack.enter_context(EmbeddedRedis(data_dir))
    return embedded.url, f"embedded Redis ({embedded.executable})"
