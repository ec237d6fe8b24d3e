"""`lr demo` plays the whole investigation on an embedded Redis and ends with a valid audit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_lr_demo_runs_every_step_and_verifies_the_audit(tmp_path: Path) -> None:
    unset = ("LR_REDIS_URL", "LR_SIGNING_KEY_FILE", "LR_ORCHESTRATOR_PUBLIC_KEY_FILE")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["LR_DATA_DIR"] = str(tmp_path / "lr-home")  # where the demo makes its signing keys
    lr = Path(sys.executable).with_name("lr")
    done = subprocess.run([str(lr), "demo"], env=env, capture_output=True, text=True,
                          timeout=180)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "embedded Redis" in out
    for line in ("dir ", "fileinfo ", "getfilehash ", "getfile ", "processes", "netstat",
                 "kill ", "remediate ", "undo Q", "findfile invoice2025.exe",
                 "runscript persistence_check.sh"):
        assert f"demo-host> {line}" in out
    for step in range(1, 10):
        assert f"## {step}. " in out
    assert "invoice2025.exe" in out
    assert "ESTABLISHED" in out
    # Every independent check the demo makes held (a failed one prints NO).
    assert out.count("(checked independently:") == 5 and ": NO)" not in out
    assert "etc/cron.d/invoice-updater" in out
    assert "audit chain ok" in out
    assert "Traceback" not in out + done.stderr
    private = tmp_path / "lr-home" / "keys" / "orchestrator-signing.key"
    assert f"created signing key {private}" in done.stderr
