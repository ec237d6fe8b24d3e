"""`lr orchestrator serve`: the control plane's HTTP API, with the embedded Redis if needed."""

from __future__ import annotations

import ipaddress
import socket
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from config.settings import Settings, redact_url
from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.local_redis import start_embedded
from orchestrator.cli.stop_signals import stop_on_signals
from tasks.errors import ConfigurationError

if TYPE_CHECKING:
    from tasks.signing import KeyPair

#: Where the API listens unless told otherwise (matches the CLI's default LR_API_URL).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Connections the kernel queues for the API before it accepts them (uvicorn's default).
LISTEN_BACKLOG = 2048


@click.group("orchestrator")
def orchestrator() -> None:
    """Run the control plane."""


@orchestrator.command("serve")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="LR_POLICY_FILE",
    help="RBAC policy (YAML) to put in force at start [default: LR_POLICY_FILE; else the "
    "policy in force stays].",
)
@pass_cli
def serve(cli: CliContext, host: str, port: int, policy_file: Path | None) -> None:
    """Serve the HTTP API until interrupted.

    Without LR_REDIS_URL a private Redis is started in the data directory and stopped on exit
    (SIGTERM and SIGINT included; it also stops when this process is killed), and the signing
    keys are created there if there are none yet. One left running by a serve that was killed
    is shut down cleanly (its data flushed) and replaced.
    """
    # Imported here: only this command needs uvicorn, FastAPI and Celery.
    from config.embedded import owner_alive, running_embedded_url
    from orchestrator.api.server import serve as serve_api
    from orchestrator.plane import ControlPlane, ensure_signing_keys

    listener = listen_on(host, port)
    if not _is_loopback(host):
        click.echo(
            f"lr: warning: serving plain HTTP on {host}; bearer tokens cross the network "
            "unencrypted unless a TLS proxy sits in front",
            err=True,
        )
    settings = cli.settings
    with stop_on_signals(), ExitStack() as stack:
        stack.callback(listener.close)
        url = settings.redis_url
        if not url and owner_alive(settings.data_dir):
            # Another orchestrator on this data directory already runs one: share it.
            url = running_embedded_url(settings.data_dir)
        if not url:
            embedded = start_embedded(settings)
            stack.callback(embedded.stop)
            url = embedded.url
        created = ensure_signing_keys(settings, embedded=not settings.redis_url)
        if created is not None:
            click.echo(announce_keys(created), err=True)
        plane = ControlPlane.from_settings(settings.model_copy(update={"redis_url": url}))
        stack.callback(plane.close)
        if policy_file is not None:
            click.echo(f"lr: policy {plane.policies.load_at_start(policy_file, plane.audit)}",
                       err=True)
        click.echo(start_banner(settings, host, port, url), err=True)
        serve_api(plane, listener)


def start_banner(settings: Settings, host: str, port: int, redis_url: str) -> str:
    """What serve says as it starts: where it listens, how agents find it, how to stop it."""
    from orchestrator.audit.keys import public_key_beside

    api = f"http://{host}:{port}"
    public_key = public_key_beside(settings.signing_key_path())
    if settings.redis_url:
        agents = (f"lr: agents: LR_REDIS_URL set to this Redis, and "
                  f"lr-agent --device-id ID --orchestrator-key <a copy of {public_key}>")
    else:
        agents = (f"lr: agents on this machine find this Redis and {public_key} by themselves "
                  f"(same LR_DATA_DIR): lr-agent --device-id ID")
    return "\n".join([
        f"lr: orchestrator API on {api} (interactive docs: {api}/docs)",
        f"lr: Redis {redact_url(redis_url)}" + ("" if settings.redis_url else
                                                 " (embedded: stopped with this server)"),
        agents,
        "lr: runs in the foreground: use another terminal for lr and lr-agent; "
        "Ctrl-C (or SIGTERM) stops it",
    ])


def announce_keys(created: KeyPair) -> str:
    """The stderr line saying where new signing keys were written."""
    return (
        f"lr: created signing key {created.private_path} (key id {created.key_id}); "
        f"agents need its public key {created.public_path}"
    )


def listen_on(host: str, port: int) -> socket.socket:
    """A socket listening on `host:port`; ConfigurationError when it cannot be bound (taken,
    or not our address). Bound before anything starts, so what serve says is listening is."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="is another orchestrator running? use --port",
        ) from None
    return sock


def check_port_free(host: str, port: int) -> None:
    """ConfigurationError when `host:port` cannot be bound (taken, or not our address)."""
    listen_on(host, port).close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@orchestrator.command("worker")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Playbook runs executed at once.")
@click.option("--loglevel", default="INFO", show_default=True, help="Celery log level.")
@pass_cli
def worker(cli: CliContext, concurrency: int, loglevel: str) -> None:
    """Execute playbook runs: consume the orchestrator queue until interrupted.

    Runs on the orchestrator's host, with its signing key: every run's order is checked
    against it before anything runs. Needs the Redis the API uses (LR_REDIS_URL, or the
    embedded one a running `lr orchestrator serve` shares).
    """
    from config.embedded import running_embedded_url
    from orchestrator.plane import ControlPlane
    from orchestrator.playbooks.worker import run_worker

    settings = cli.settings
    url = settings.redis_url or running_embedded_url(settings.data_dir)
    if not url:
        raise ConfigurationError("no Redis to take playbook runs from",
                                 hint="set LR_REDIS_URL, or start `lr orchestrator serve` first")
    plane = ControlPlane.from_settings(settings.model_copy(update={"redis_url": url}))
    click.echo(f"lr: orchestrator worker on Redis {redact_url(url)}; Ctrl-C stops it", err=True)
    try:
        run_worker(plane, concurrency, loglevel)
    finally:
        plane.close()
