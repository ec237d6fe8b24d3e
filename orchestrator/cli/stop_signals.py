"""SIGTERM and SIGINT end `lr orchestrator serve` through its clean-up, never around it.

uvicorn catches both while it serves, shuts down, then raises the signal again with the
handler it found: with Python's default SIGTERM handler the process died on the spot, and the
embedded Redis it started was left running. Ours raises `Stopped` instead, so every `with`
and `finally` on the way out runs; a second signal while cleaning up is ignored.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click

#: What systemd, Docker and Ctrl-C send.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):  # noqa: N818 - not an error: how a stop request unwinds
    """Raised in the main thread when a stop signal arrives (a BaseException, like
    KeyboardInterrupt, so no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first stop signal into `Stopped`, run the clean-up, and end normally."""
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    except Stopped as exc:
        click.echo(f"lr: stopped by {signal.Signals(exc.signum).name}", err=True)
    finally:
        stopping = True  # until the old handlers are back
        for sig, handler in previous.items():
            signal.signal(sig, handler)
