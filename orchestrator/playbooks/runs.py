"""The state of playbook runs in Redis: one JSON record per run, listed by start time.

This is a view of a run for `lr playbook show`, kept by the orchestrator worker. It is not what
makes a step run once (anyone who can write to Redis can reset it): each step's command id is
derived from (run id, step id, item), so a resumed run finds the command it already started,
and the agent's ledger refuses a second run of that id anyway.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field, ValidationError

from tasks.errors import NotFoundError
from tasks.keys import Keys
from tasks.replies import as_text

#: Seconds a run's record (and its playbook's text) is kept.
RUN_TTL_S = 30 * 24 * 3600
#: Most runs `lr playbook runs` lists.
LIST_LIMIT = 500

# KEYS[1] = lease; ARGV[1] = holder; ARGV[2] = ms. Renew only a lease we still hold.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RunStatus(StrEnum):
    """Where a run is; completed and failed are final."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting-approval"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED)


class StepCommand(BaseModel):
    """One command a step sent (a step with for_each sends one per item)."""

    line: str
    command_id: str
    status: str
    summary: str = ""
    error: str | None = None


class StepRun(BaseModel):
    """One step of a run: pending, running, pending-approval, completed, failed, skipped,
    or not-run (an earlier step stopped the run)."""

    id: str
    name: str = ""
    status: str = "pending"
    #: Why it was skipped, or what failed before any command was sent (a template's value).
    reason: str | None = None
    commands: list[StepCommand] = Field(default_factory=list)


class RunRecord(BaseModel):
    """One run of one playbook on one device, as `lr playbook show` prints it."""

    run_id: str
    playbook: str
    playbook_sha256: str
    device_id: str
    user: str
    inputs: dict[str, Any]
    status: RunStatus
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    #: The alert rule that started the run, if an alert did.
    rule: str | None = None
    session_id: str | None = None
    error: str | None = None
    steps: list[StepRun]
    #: The signed order (JSON) a worker resumes the run from.
    order: dict[str, Any]


class RunStore:
    """Reads and writes run records and leases under one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    def save(self, run: RunRecord) -> None:
        """Write the whole record (and list it)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.playbook_run(run.run_id), run.model_dump_json(), ex=RUN_TTL_S)
        pipe.zadd(self.keys.playbook_runs, {run.run_id: run.created_at})
        pipe.execute()

    def get(self, run_id: str) -> RunRecord:
        """A run's record; NotFoundError when there is none (or it is unreadable)."""
        raw = self.client.get(self.keys.playbook_run(run_id)) if len(run_id) <= 64 else None
        if raw is not None:
            try:
                return RunRecord.model_validate_json(raw)
            except ValidationError:
                pass
        raise NotFoundError(f"unknown playbook run {run_id!r}",
                            hint="list runs with `lr playbook runs`")

    def find(self, run_id: str) -> RunRecord | None:
        try:
            return self.get(run_id)
        except NotFoundError:
            return None

    def list(self, limit: int = LIST_LIMIT) -> list[RunRecord]:
        """The newest runs first (records that expired or do not parse are left out)."""
        ids = [as_text(i) for i in self.client.zrevrange(self.keys.playbook_runs, 0, limit - 1)]
        if not ids:
            return []
        out = []
        for raw in self.client.mget([self.keys.playbook_run(i) for i in ids]):
            if raw is None:
                continue
            try:
                out.append(RunRecord.model_validate_json(raw))
            except ValidationError:
                continue
        return out

    def store_text(self, text: str, sha256: str) -> None:
        """Keep a playbook's text under its sha256 (the worker checks the digest it reads)."""
        self.client.set(self.keys.playbook_text(sha256), text.encode(), ex=RUN_TTL_S)

    def text(self, sha256: str) -> str | None:
        raw = self.client.get(self.keys.playbook_text(sha256))
        return as_text(raw) if raw is not None else None

    def take_lease(self, run_id: str, holder: str, lease_s: float) -> bool:
        """Claim the run for this worker; False when another live worker holds it."""
        return bool(self.client.set(self.keys.playbook_lease(run_id), holder, nx=True,
                                    px=int(lease_s * 1000)))

    def renew_lease(self, run_id: str, holder: str, lease_s: float) -> bool:
        return bool(self._renew(keys=[self.keys.playbook_lease(run_id)],
                                args=[holder, int(lease_s * 1000)]))

    def release_lease(self, run_id: str, holder: str) -> None:
        self._release(keys=[self.keys.playbook_lease(run_id)], args=[holder])

    def leased(self, run_id: str) -> bool:
        return bool(self.client.exists(self.keys.playbook_lease(run_id)))


def step_command_id(run_id: str, step_id: str, item: int | None = None) -> str:
    """The command id of a step (of one item of it): the same on every attempt of the run, so
    a resumed run finds the command it already started instead of sending another."""
    seed = f"playbook:{run_id}:{step_id}" + (f":{item}" if item is not None else "")
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def inputs_digest(inputs: dict[str, Any]) -> str:
    """A digest of a run's inputs for its audit entries (IOC lists can be long)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
