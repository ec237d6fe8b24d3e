"""Collecting a batch's outcomes when someone reads it (the reaper does it in the background).

Nobody waits per command of a batch: reading the batch records, at once, every outcome of its
commands that can be known now (`commands.reaper.collect`, with no grace: no waiter exists).
"""

from __future__ import annotations

from orchestrator.commands.dispatch import Dispatcher
from orchestrator.commands.reaper import collect as collect_records
from orchestrator.commands.records import load_records
from orchestrator.fleet.batches import batch_command_ids
from orchestrator.plane import ControlPlane


def collect(plane: ControlPlane, dispatcher: Dispatcher, batch_id: str) -> int:
    """Record every outcome of the batch that can be known now; how many were recorded."""
    records = load_records(plane, batch_command_ids(plane, batch_id))
    return collect_records(plane, dispatcher, records, grace_s=0.0)
