"""Names of the Redis keys both sides use; one `Keys` per key prefix (tests use their own)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (default `lr`)."""

    prefix: str = "lr"

    def device(self, device_id: str) -> str:
        """Hash: platform, hostname, agent version, last heartbeat, isolation state."""
        return f"{self.prefix}:device:{device_id}"

    @property
    def devices(self) -> str:
        """Set of every registered device id."""
        return f"{self.prefix}:devices"

    def session(self, session_id: str) -> str:
        """Hash: one live-response session."""
        return f"{self.prefix}:session:{session_id}"

    @property
    def sessions(self) -> str:
        """Sorted set of session ids by creation time."""
        return f"{self.prefix}:sessions"

    def command(self, command_id: str) -> str:
        """Hash: one command's state, owner and outcome digest."""
        return f"{self.prefix}:cmd:{command_id}"

    def session_commands(self, session_id: str) -> str:
        """List of the command ids of one session, in order."""
        return f"{self.prefix}:session:{session_id}:cmds"

    def session_jobs(self, session_id: str) -> str:
        """Counter: the last job number given in one session."""
        return f"{self.prefix}:session:{session_id}:jobs"

    @property
    def audit(self) -> str:
        """Stream: the hash-chained audit log."""
        return f"{self.prefix}:audit"

    @property
    def audit_head(self) -> str:
        """String: hash of the newest audit entry (the chain's head)."""
        return f"{self.prefix}:audit:head"

    @property
    def audit_checkpoint(self) -> str:
        """String: the signed checkpoint of the newest trim (JSON); absent until a first trim."""
        return f"{self.prefix}:audit:checkpoint"

    def user(self, name: str) -> str:
        """Hash: one user (grants, created)."""
        return f"{self.prefix}:user:{name}"

    @property
    def users(self) -> str:
        """Set of user names."""
        return f"{self.prefix}:users"

    def user_tokens(self, name: str) -> str:
        """Set: hashes of the tokens issued to one user (to list and revoke them)."""
        return f"{self.prefix}:user:{name}:tokens"

    @property
    def bootstrap(self) -> str:
        """String: the first admin's name, claimed once by `lr admin init`."""
        return f"{self.prefix}:bootstrap"

    @property
    def policy(self) -> str:
        """Hash: the policy in force (yaml, digest, who set it, when)."""
        return f"{self.prefix}:policy"

    @property
    def approvals(self) -> str:
        """Sorted set: ids of commands waiting for approval, by approval deadline."""
        return f"{self.prefix}:approvals"

    def token(self, token_hash: str) -> str:
        """String: the user a token (by its sha256) belongs to."""
        return f"{self.prefix}:token:{token_hash}"

    def library_blob(self, sha256: str, n: int) -> str:
        """String: chunk `n` (1 MiB) of a library file's content, by the content's sha256."""
        return f"{self.prefix}:library:blob:{sha256}:{n}"

    def library_upload(self, upload_id: str, n: int) -> str:
        """String: chunk `n` of an upload not yet hashed to its end (expires if abandoned)."""
        return f"{self.prefix}:library:upload:{upload_id}:{n}"

    def library_item(self, name: str) -> str:
        """Hash: one library file (name, sha256, size, chunks, description, added_by, ...)."""
        return f"{self.prefix}:library:item:{name}"

    @property
    def library_names(self) -> str:
        """Set of every library file's name."""
        return f"{self.prefix}:library:names"

    @property
    def library_version(self) -> str:
        """Counter bumped by every library change; changes watch it to never interleave."""
        return f"{self.prefix}:library:version"

    def xfer(self, command_id: str) -> str:
        """Stream: the chunks of one `getfile` transfer, consumed and deleted by the receiver."""
        return f"{self.prefix}:xfer:{command_id}"

    @property
    def evidence(self) -> str:
        """Sorted set: command ids of stored evidence, by the time it was stored."""
        return f"{self.prefix}:evidence"

    def evidence_record(self, command_id: str) -> str:
        """String (JSON): one acquisition's chain-of-custody record in the evidence store."""
        return f"{self.prefix}:evidence:cmd:{command_id}"

    def evidence_object(self, sha256: str) -> str:
        """Set: the command ids whose acquisitions stored the object with this sha256."""
        return f"{self.prefix}:evidence:sha256:{sha256}"

    def batch(self, batch_id: str) -> str:
        """Hash: one fleet batch (its line, selector, owner, times, device count)."""
        return f"{self.prefix}:batch:{batch_id}"

    def batch_commands(self, batch_id: str) -> str:
        """List of `device command_id` pairs of one batch, in the order devices were named."""
        return f"{self.prefix}:batch:{batch_id}:cmds"

    @property
    def batches(self) -> str:
        """Sorted set of batch ids by creation time."""
        return f"{self.prefix}:batches"

    @property
    def open_commands(self) -> str:
        """Set of the command ids whose outcome is not recorded yet (what the reaper sweeps)."""
        return f"{self.prefix}:cmds:open"

    def playbook_run(self, run_id: str) -> str:
        """String (JSON): one playbook run's state, as the orchestrator worker last wrote it."""
        return f"{self.prefix}:playbook:run:{run_id}"

    @property
    def playbook_runs(self) -> str:
        """Sorted set: playbook run ids by the time they were started."""
        return f"{self.prefix}:playbook:runs"

    def playbook_text(self, sha256: str) -> str:
        """String: a playbook's YAML text, by its sha256 (the digest its runs' orders sign)."""
        return f"{self.prefix}:playbook:text:{sha256}"

    def playbook_lease(self, run_id: str) -> str:
        """String with a TTL: the orchestrator worker executing a run (absent: nobody is)."""
        return f"{self.prefix}:playbook:lease:{run_id}"
