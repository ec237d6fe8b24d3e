"""`lr demo`: run the investigation walk-through on this machine."""

from __future__ import annotations

import sys

import click


@click.command()
def demo() -> None:
    """Play the investigation of a suspicious download on a local agent."""
    from orchestrator.local.demo import run_demo

    sys.exit(run_demo(click.echo))
