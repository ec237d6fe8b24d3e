"""The `Settings` object: every tunable of liveresponse, read from `LR_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where the CLI looks for the orchestrator when `LR_API_URL` is not set.
DEFAULT_API_URL = "http://127.0.0.1:8765"


#: System-critical paths `remediate` refuses by default (the agent's own files are added).
DEFAULT_DENY_PATHS = (
    "/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/boot",
    "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers", "C:\\Windows",
)


def _default_data_dir() -> Path:
    return Path.home() / ".liveresponse"


class Settings(BaseSettings):
    """All configuration, with defaults fit for a laptop; production overrides by environment."""

    model_config = SettingsConfigDict(env_prefix="LR_", extra="ignore")

    #: Redis for broker, result backend and state; unset means a private embedded server.
    redis_url: str | None = None
    #: Data directory: embedded Redis socket, evidence, agent quarantine.
    data_dir: Path = Field(default_factory=_default_data_dir)
    #: Where the CLI finds the orchestrator's HTTP API.
    api_url: str = DEFAULT_API_URL
    #: The CLI's bearer token.
    token: str | None = None
    #: Prefix of every Redis key we own (tests use their own).
    key_prefix: str = "lr"

    #: A session with no command for this long is closed.
    session_idle_timeout_s: float = 30 * 60
    #: A session is closed this long after it opened, active or not.
    session_max_length_s: float = 4 * 60 * 60
    #: Soft time limit of one command on the agent (the hard limit is a little later).
    command_time_limit_s: float = 60.0
    #: A queued command that no agent started within this long is dropped as expired.
    command_expiry_s: float = 30.0
    #: Longest wait an analyst may choose for one command (`--expires`): how long it may sit
    #: queued for an offline device. Keep it within `envelope_max_lifetime_s`.
    command_expiry_max_s: float = Field(default=7 * 24 * 60 * 60, gt=0)
    #: Results larger than this (JSON bytes) are truncated, with a marker saying so.
    output_max_bytes: int = 4 * 1024 * 1024
    #: Largest file the library takes (its content lives in Redis, for isolated agents).
    library_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: A `runscript` script still running after this long is stopped (whole process group);
    #: kept below the command's own time limit.
    runscript_timeout_s: float = Field(default=30.0, gt=0)

    #: How often an agent writes its heartbeat.
    heartbeat_interval_s: float = 5.0
    #: A device whose last heartbeat is older than this is shown offline.
    device_offline_after_s: float = 20.0
    #: Commands an agent runs at once (threads of its one process, or prefork pool processes).
    agent_concurrency: int = Field(default=2, ge=1)
    #: How an agent runs commands: `threads` (one process; time limits and cancel enforced by
    #: the agent's watchdog, a thread stuck in a system call is abandoned, not killed) or
    #: `prefork` (a process per command slot, killed at the hard time limit: more memory).
    agent_pool: Literal["threads", "prefork"] = "threads"
    #: Seconds between broker polls of an idle agent (Redis transport).
    agent_polling_interval_s: float = 0.5

    #: The orchestrator's Ed25519 private key; default `<data_dir>/keys/orchestrator-signing.key`.
    signing_key_file: Path | None = None
    #: The agent's copy of the orchestrator's public key; default `<data_dir>/keys/…signing.pub`.
    orchestrator_public_key_file: Path | None = None
    #: Where the orchestrator keeps the witness of the audit chain's head: one small file per
    #: key prefix on its own disk, never in Redis; default `<data_dir>/audit-witness`.
    audit_witness_dir: Path | None = None
    #: Where the agent keeps its once-only ledger (one SQLite file per device, on the
    #: endpoint's own disk, never in Redis); default `<data_dir>/ledger`.
    ledger_dir: Path | None = None
    #: Longest life an agent accepts in a signed envelope or cancel order (expiry minus now,
    #: and expiry minus issue time); longer ones are refused as `expiry_too_far`. Keep
    #: `command_expiry_s` below it.
    envelope_max_lifetime_s: float = Field(default=7 * 24 * 60 * 60 + 60 * 60, gt=0)

    #: Largest file `getfile` copies (the orchestrator's limit is signed into the command;
    #: an agent also applies its own); larger ones are refused before any byte moves.
    getfile_max_bytes: int = Field(default=3 * 1024**3, ge=0)
    #: Bytes per chunk of a file transfer over the broker (agent side).
    transfer_chunk_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)
    #: Chunks a sender may have unread in the stream before it waits for the receiver.
    transfer_window_chunks: int = Field(default=8, ge=1)
    #: Either side gives a transfer up when the other makes no progress for this long.
    transfer_stall_timeout_s: float = Field(default=30.0, gt=0)
    #: The orchestrator's evidence store; default `<data_dir>/evidence`.
    evidence_dir: Path | None = None
    #: The agent's quarantine vault (mode 0700); default `<data_dir>/quarantine`.
    quarantine_dir: Path | None = None
    #: Paths `remediate` refuses (equal, under, or holding one) unless --force by an admin.
    remediate_deny_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY_PATHS))
    #: Root the `persistence` and `services` commands read autostart places under.
    persistence_root: Path = Path("/")
    #: Root `logs`, `users` and `sessions` read the system's files under (var/log, etc/passwd,
    #: run/utmp): "/" on a live endpoint, a mounted image or a test tree otherwise.
    system_root: Path = Path("/")
    #: `user:password` that `lr flower` requires of every request (HTTP basic auth).
    flower_basic_auth: SecretStr | None = None

    #: Playbooks that alerts may start (`POST /alerts`); default the shipped `playbooks/`.
    playbook_dir: Path | None = None
    #: An orchestrator worker executing a run renews its lease this often (a third of it);
    #: a run whose lease lapsed (its worker died) is resumed by another worker.
    playbook_lease_s: float = Field(default=15.0, gt=0)
    #: How long a signed playbook order stays valid: a run is resumed only within it.
    playbook_order_lifetime_s: float = Field(default=24 * 3600, gt=0)

    def keys_dir(self) -> Path:
        """Where `lr admin keys init` writes the signing keys by default."""
        return self.data_dir / "keys"

    def signing_key_path(self) -> Path:
        """Where the orchestrator's private signing key is read from."""
        return self.signing_key_file or self.keys_dir() / "orchestrator-signing.key"

    def evidence_path(self) -> Path:
        """The orchestrator's evidence store (content-addressed files, temp files)."""
        return self.evidence_dir or self.data_dir / "evidence"

    def quarantine_path(self) -> Path:
        """The agent's quarantine vault."""
        return self.quarantine_dir or self.data_dir / "quarantine"

    def ledger_path(self, device_id: str) -> Path:
        """The agent's once-only ledger of one device (a validated device id)."""
        return (self.ledger_dir or self.data_dir / "ledger") / f"{device_id}.sqlite3"

    def audit_witness_path(self) -> Path:
        """The directory of the orchestrator's audit witness files."""
        return self.audit_witness_dir or self.data_dir / "audit-witness"

    def playbook_path(self) -> Path:
        """The directory of playbooks alerts may start."""
        return self.playbook_dir or Path(__file__).resolve().parents[1] / "playbooks"

    def orchestrator_public_key_path(self) -> Path:
        """Where an agent reads the public key it checks every task's signature with."""
        return self.orchestrator_public_key_file or self.keys_dir() / "orchestrator-signing.pub"


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with keyword overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]


def redact_url(url: str) -> str:
    """`url` without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
