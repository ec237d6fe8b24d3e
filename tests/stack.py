"""A live liveresponse stack for tests: control plane, API in a thread, real agent processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from config import Settings
from orchestrator.api.server import ServerThread
from orchestrator.local.agents import LocalAgent
from orchestrator.local.cleanup import delete_device_queues, delete_matching, delete_results
from orchestrator.plane import ControlPlane
from orchestrator.policies.model import Grant
from orchestrator.state.identity import create_user, issue_token
from tasks import clock
from tasks.signing import KeyPair, generate_keypair
from worker_agent.ledger import Ledger


@dataclass
class Stack:
    """What a test drives: the plane, the API's URL, an admin token and running agents."""

    plane: ControlPlane
    url: str
    token: str
    #: The orchestrator's signing keys; agents trust `signing.public_path`.
    signing: KeyPair
    agents: dict[str, LocalAgent] = field(default_factory=dict)
    #: The settings every agent of the stack runs with (as LR_* variables).
    agent_env: dict[str, str] = field(default_factory=dict)

    def local_agent(self, device_id: str, log_path: Path) -> LocalAgent:
        """An agent (not started) on this stack's Redis and prefix, trusting its signing key,
        with the settings (and so the ledger) of the stack's own agents."""
        return LocalAgent(device_id, self.plane.settings.redis_url or "",
                          key_prefix=self.plane.keys.prefix, log_path=log_path,
                          env=self.agent_env, public_key_file=self.signing.public_path)

    def ledger(self, device_id: str) -> Ledger:
        """The once-only ledger a device's agent keeps on (this machine's) disk."""
        return Ledger(self.plane.settings.ledger_path(device_id))

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client of the API, authenticated as `token` (default: the admin)."""
        return httpx.Client(base_url=self.url, timeout=120,
                            headers={"Authorization": f"Bearer {token or self.token}"})

    def open_session(self, device_id: str, token: str | None = None) -> str:
        with self.client(token) as http:
            resp = http.post("/sessions", json={"device_id": device_id})
            assert resp.status_code == 201, resp.text
            return str(resp.json()["id"])

    def run(self, session_id: str, line: str, token: str | None = None) -> dict[str, Any]:
        """POST a command line and return the JSON body (errors included)."""
        with self.client(token) as http:
            body: dict[str, Any] = http.post(f"/sessions/{session_id}/commands",
                                             json={"line": line}).json()
            return body

    def user(self, name: str, roles: list[str], scope: str | None = None) -> str:
        """Create a user holding `roles` (on devices tagged `scope`, if given); their token."""
        grants = [Grant(role=r, scope=scope) for r in roles]
        user = create_user(self.plane.client, self.plane.keys, name, grants=grants)
        return issue_token(self.plane.client, self.plane.keys, user)

    def tag(self, device_id: str, *tags: str) -> None:
        """Give a device its groups, as an admin does."""
        with self.client() as http:
            resp = http.put(f"/devices/{device_id}/tags", json={"tags": list(tags)})
            assert resp.status_code == 200, resp.text


def new_device_id(tag: str = "dev") -> str:
    """A device id no other test uses."""
    return f"{tag}-{uuid.uuid4().hex[:8]}"


@contextmanager
def live_stack(redis_url: str, key_prefix: str, devices: list[str], log_dir: Path,
               *, signing: KeyPair | None = None, **settings: Any) -> Iterator[Stack]:
    """Start the API and one agent per device id; stop everything on exit, even on failure.

    `signing`: the orchestrator's keys (default: a new pair in `log_dir`).
    """
    signing = signing or generate_keypair(log_dir / "signing-keys")
    settings.setdefault("evidence_dir", log_dir / "evidence")  # never the user's own store
    settings.setdefault("quarantine_dir", log_dir / "quarantine")  # nor the user's own vault
    settings.setdefault("ledger_dir", log_dir / "ledger")  # nor the user's own ledger
    settings.setdefault("audit_witness_dir", log_dir / "audit-witness")  # nor audit witness
    cfg = Settings(redis_url=redis_url, key_prefix=key_prefix,
                   signing_key_file=signing.private_path,
                   orchestrator_public_key_file=signing.public_path, **settings)
    with ExitStack() as stack:
        plane = ControlPlane.from_settings(cfg)
        stack.callback(plane.close)
        server = stack.enter_context(ServerThread(plane))
        admin = create_user(plane.client, plane.keys, "admin", ["admin"])
        token = issue_token(plane.client, plane.keys, admin)
        agents: dict[str, LocalAgent] = {}
        env = {k: str(v) for k, v in _agent_env(settings).items()}
        for device_id in devices:
            agent = LocalAgent(device_id, redis_url, key_prefix=key_prefix,
                               log_path=log_dir / f"agent-{device_id}.log", env=env,
                               public_key_file=signing.public_path)
            stack.enter_context(agent)
            agents[device_id] = agent
        yield Stack(plane=plane, url=server.url, token=token, signing=signing, agents=agents,
                    agent_env=env)
        for agent in agents.values():
            purge_device_queue(plane, agent.device_id)


@contextmanager
def own_prefix_stack(redis_url: str, devices: list[str], log_dir: Path, **settings: Any
                     ) -> Iterator[Stack]:
    """`live_stack` on a key prefix of its own; every key under it, and the result-backend
    entry of every command it recorded, is deleted afterwards."""
    prefix = f"lrtest-{uuid.uuid4().hex[:10]}"
    try:
        with live_stack(redis_url, prefix, devices, log_dir, **settings) as st:
            yield st
    finally:
        client = redis.Redis.from_url(redis_url)
        # The commands' results live outside the prefix: find them by the prefix's records.
        marker = f"{prefix}:cmd:"
        delete_results(client, [key.decode()[len(marker):]
                                for key in client.scan_iter(match=f"{marker}*", count=1000)])
        delete_matching(client, f"{prefix}:*")


def _agent_env(settings: dict[str, Any]) -> dict[str, Any]:
    names = ("command_time_limit_s", "output_max_bytes", "heartbeat_interval_s",
             "runscript_timeout_s", "getfile_max_bytes", "transfer_chunk_bytes",
             "transfer_window_chunks", "transfer_stall_timeout_s",
             "quarantine_dir", "remediate_deny_paths", "persistence_root", "system_root",
             "ledger_dir", "envelope_max_lifetime_s", "agent_pool")
    # Lists travel as JSON, the form pydantic-settings reads them in.
    return {f"LR_{n.upper()}": json.dumps(settings[n]) if isinstance(settings[n], list)
            else settings[n] for n in names if n in settings}


def register_offline(stack: Stack, *tags: str) -> str:
    """A device whose agent registered once and has not been seen for a while."""
    device = new_device_id("off")
    now = clock.now()
    plane = stack.plane
    plane.client.hset(plane.keys.device(device), mapping={
        "platform": "linux", "hostname": "nowhere", "agent_version": "0.1.0",
        "registered_at": repr(now - 3600), "last_seen": repr(now - 3600),
        "tags": ",".join(tags)})
    plane.client.sadd(plane.keys.devices, device)
    return device


def purge_device_queue(plane: ControlPlane, device_id: str) -> None:
    """Delete a test device's queue keys and bindings so nothing is left in the shared Redis."""
    delete_device_queues(plane.client, [device_id])


def completed(body: dict[str, Any]) -> dict[str, Any]:
    """The result of a command answer that must have completed (the whole answer otherwise)."""
    assert body.get("status") == "completed", body
    return dict(body["result"])
