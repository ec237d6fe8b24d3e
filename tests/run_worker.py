"""An `lr orchestrator worker` child process on a test stack's Redis, prefix and keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.local.cleanup import delete_matching, delete_queues
from orchestrator.playbooks.orders import orchestrator_queue
from tests.stack import Stack


class RunWorkerProcess:
    """The orchestrator worker as a real process (so a test can SIGKILL it mid-run)."""

    def __init__(self, stack: Stack, log_path: Path, **settings: object) -> None:
        s = stack.plane.settings
        self.stack = stack
        self.log_path = log_path
        self.env = {
            **os.environ, "LR_REDIS_URL": s.redis_url or "", "LR_KEY_PREFIX": s.key_prefix,
            "LR_DATA_DIR": str(log_path.parent / "worker-home"),
            "LR_SIGNING_KEY_FILE": str(stack.signing.private_path),
            "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": str(stack.signing.public_path),
            "LR_EVIDENCE_DIR": str(s.evidence_path()),
            "LR_AUDIT_WITNESS_DIR": str(s.audit_witness_path()),
            # Every worker of the stack shares the record of the step commands it sent.
            "LR_LEDGER_DIR": str(s.ledger_dir or log_path.parent / "ledger"),
            "LR_PLAYBOOK_LEASE_S": str(s.playbook_lease_s),
            "LR_COMMAND_EXPIRY_S": str(s.command_expiry_s),
            **{f"LR_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RunWorkerProcess:
        argv = [sys.executable, "-m", "orchestrator.cli.main", "orchestrator", "worker",
                "--concurrency", "2"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean-up of any kind."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> RunWorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        queue = orchestrator_queue(self.stack.plane.keys.prefix)
        delete_matching(self.stack.plane.client, f"{queue}*")
        delete_queues(self.stack.plane.client, [queue])  # its kombu binding sets too
