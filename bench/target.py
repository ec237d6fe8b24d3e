"""The Redis a benchmark measures on (LR_REDIS_URL, else a private embedded one), and the
machine, versions and Redis each benchmark prints before its figures."""

from __future__ import annotations

import os
import platform
from contextlib import ExitStack
from pathlib import Path

import celery
import kombu
import redis

from config import EmbeddedRedis


def bench_redis(stack: ExitStack, data_dir: Path, url: str | None = None) -> tuple[str, str]:
    """`url` (default: LR_REDIS_URL), else an embedded Redis in `data_dir` that `stack` stops;
    with a line saying which it is."""
    url = url if url is not None else os.environ.get("LR_REDIS_URL")
    if url:
        return url, f"Redis server at {url}"
    embedded = stack.enter_context(EmbeddedRedis(data_dir))
    return embedded.url, f"embedded Redis ({embedded.executable})"


def describe_machine(redis_url: str, where: str) -> None:
    """Print the machine, the versions and the Redis a run measured."""
    info = redis.Redis.from_url(redis_url).info("server")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}")
    print(f"python {platform.python_version()}, celery {celery.__version__}, "
          f"kombu {kombu.__version__}, redis-py {redis.__version__}, "
          f"redis-server {info['redis_version']}; {where}")
    print()
