"""`lr-agent`: start the agent worker for one device, consuming only that device's queue."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import ValidationError

from config import get_settings
from config.embedded import running_embedded_url
from config.settings import redact_url
from tasks.errors import LiveResponseError
from tasks.queues import queue_for
from worker_agent.app import build_agent_app


def worker_argv(device_id: str, concurrency: int, loglevel: str,
                pool: str = "threads") -> list[str]:
    """The Celery worker command line of an agent (see DESIGN: threads or prefork pool, no
    gossip or mingle)."""
    return [
        "worker",
        "--queues", queue_for(device_id),
        "--pool", pool,
        "--concurrency", str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--task-events",
        "--hostname", f"lr-agent-{device_id}@%h",
        "--loglevel", loglevel,
    ]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device-id", required=True,
              help="This endpoint's device id ([A-Za-z0-9._-]{1,64}).")
@click.option("--redis-url", envvar="LR_REDIS_URL",
              help="Broker and state (default LR_REDIS_URL, else the embedded Redis a running "
                   "`lr orchestrator serve` started in this machine's data dir).")
@click.option("--orchestrator-key", "orchestrator_key", envvar="LR_ORCHESTRATOR_PUBLIC_KEY_FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The orchestrator's public key; only tasks it signed run "
                   "(default LR_ORCHESTRATOR_PUBLIC_KEY_FILE, else <data dir>/keys/"
                   "orchestrator-signing.pub).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Commands run at once (default LR_AGENT_CONCURRENCY, else 2).")
@click.option("--pool", type=click.Choice(["threads", "prefork"]), default=None,
              help="threads: one process, commands in threads, stopped at their time limit "
                   "by the agent (a thread stuck in a system call is abandoned); prefork: a "
                   "process per command slot, killed at the hard limit, more memory "
                   "(default LR_AGENT_POOL, else threads).")
@click.option("--loglevel", default="INFO", show_default=True)
def main(device_id: str, redis_url: str | None, orchestrator_key: Path | None,
         concurrency: int | None, pool: str | None, loglevel: str) -> None:
    """Run the liveresponse agent for DEVICE_ID."""
    overrides: dict[str, object] = {}
    if orchestrator_key:
        overrides["orchestrator_public_key_file"] = orchestrator_key
    if pool:
        overrides["agent_pool"] = pool
    try:
        settings = get_settings(**overrides)
    except ValidationError as exc:
        wrong = "; ".join(f"LR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                          for e in exc.errors())
        click.echo(f"lr-agent: bad setting: {wrong}", err=True)
        sys.exit(2)
    redis_url = redis_url or running_embedded_url(settings.data_dir)
    if not redis_url:
        click.echo(
            "lr-agent: no Redis: set LR_REDIS_URL (or --redis-url) to the orchestrator's Redis, "
            f"or start 'lr orchestrator serve' on this machine first (its embedded Redis in "
            f"{settings.data_dir})",
            err=True,
        )
        sys.exit(2)
    settings = settings.model_copy(update={"redis_url": redis_url})
    try:
        app = build_agent_app(device_id, settings)
    except LiveResponseError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        click.echo(f"lr-agent: {exc.message}{hint}", err=True)
        sys.exit(2)
    except ValueError as exc:
        click.echo(f"lr-agent: {exc}", err=True)
        sys.exit(2)
    slots = concurrency or settings.agent_concurrency
    click.echo(
        f"lr-agent: device {device_id} on Redis {redact_url(redis_url)}, commands checked with "
        f"{settings.orchestrator_public_key_path()}, {slots} at once ({settings.agent_pool} "
        "pool); Ctrl-C (or SIGTERM) stops it",
        err=True,
    )
    app.worker_main(worker_argv(device_id, slots, loglevel, settings.agent_pool))


if __name__ == "__main__":
    main()
