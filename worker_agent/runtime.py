"""What an agent's worker needs besides its tasks: device, Redis, keys, verifier, audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from tasks.keys import Keys
from tasks.signing import Verifier
from worker_agent.refusals import AgentAudit
from worker_agent.watchdog import Watchdog


@dataclass
class AgentRuntime:
    """Hung on the agent's Celery app (`app.lr_agent`), read by its bootsteps and handlers."""

    device_id: str
    client: redis.Redis
    keys: Keys
    heartbeat_interval_s: float
    #: Checks signed cancel orders against the orchestrator's public key.
    verifier: Verifier
    #: Records refused remote control, cancel orders and what Celery drops.
    audit: AgentAudit
    #: Longest life accepted in a signed record (see Settings.envelope_max_lifetime_s).
    max_lifetime_s: float
    #: Stops commands run in threads (their time limits, the signed cancel); None when the
    #: agent runs the prefork pool, which kills a command's process instead.
    watchdog: Watchdog | None = None


def runtime_of(app: Any) -> AgentRuntime:
    """The runtime of an agent's Celery app (set by `build_agent_app`)."""
    runtime: AgentRuntime = app.lr_agent
    return runtime
