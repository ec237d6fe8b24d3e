"""`lr demo`: the investigation of a suspicious download, played on this machine end to end."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from config import EmbeddedRedis, Settings
from orchestrator.api.server import ServerThread
from orchestrator.cli.client import ApiClient
from orchestrator.cli.render import render_record
from orchestrator.cli.render_lists import render_verdict
from orchestrator.cli.serve import announce_keys
from orchestrator.files.library import shipped_file
from orchestrator.local.agents import LocalAgent
from orchestrator.local.cleanup import delete_matching
from orchestrator.plane import ControlPlane, ensure_signing_keys
from orchestrator.state.identity import create_user, issue_token
from tasks.queues import queue_for

#: The endpoint the demo's agent plays.
DEMO_DEVICE = "demo-host"
#: The downloaded file under investigation.
SUSPECT_NAME = "invoice2025.exe"
#: Where the planted process "calls home" (a loopback address of our own).
C2_ADDRESS = ("127.66.6.6", 4444)

# The planted process: holds the suspect open and keeps a connection to the "C2" address.
_HOLDER_CODE = (
    "import socket, sys, time\n"
    "held = open(sys.argv[1], 'rb')\n"
    "conn = socket.create_connection((sys.argv[2], int(sys.argv[3])))\n"
    "time.sleep(3600)\n"
)


#: The cron entry the dropper left so it starts again (what the persistence script finds).
CRON_NAME = "invoice-updater"
#: The shipped script the analyst runs (`library/persistence_check.sh`).
SCRIPT_NAME = "persistence_check.sh"


@dataclass
class Scene:
    """What the demo planted: the downloads folder, the suspect, its process and its socket,
    and the cron entry that would start it again."""

    root: Path
    downloads: Path
    suspect: Path
    holder: subprocess.Popen[bytes]
    c2: tuple[str, int]
    cron: Path


def plant_scene(stack: ExitStack, root: Path) -> Scene:
    """Create the suspicious download, a process holding it open and its outbound connection."""
    downloads = root / "home" / "alice" / "Downloads"
    downloads.mkdir(parents=True)
    (downloads / "quarterly-report.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2048))
    suspect = downloads / SUSPECT_NAME
    suspect.write_bytes(b"MZ\x90\x00" + os.urandom(48 * 1024))
    listener = socket.socket()
    stack.callback(listener.close)
    try:
        listener.bind(C2_ADDRESS)
    except OSError:
        listener.bind((C2_ADDRESS[0], 0))
    listener.listen()
    c2 = listener.getsockname()
    # argv[0] names the process after the download, as a dropped binary would appear.
    holder = subprocess.Popen(
        [SUSPECT_NAME, "-c", _HOLDER_CODE, str(suspect), c2[0], str(c2[1])],
        executable=sys.executable, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    stack.callback(_reap, holder)
    _wait_connected(holder.pid, c2)
    cron = root / "etc" / "cron.d" / CRON_NAME
    cron.parent.mkdir(parents=True)
    cron.write_text(f"*/5 * * * * alice {suspect} --update\n")
    return Scene(root, downloads, suspect, holder, c2, cron)


def run_demo(echo: Callable[[str], None] = print) -> int:
    """Play the whole investigation; return 0 when every step worked and the audit verifies."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lr-demo-", dir="/tmp")))
        redis_url = os.environ.get("LR_REDIS_URL")
        if redis_url:
            where = f"Redis at {redis_url.split('@')[-1]}"
        else:
            server = stack.enter_context(EmbeddedRedis(tmp / "redis"))
            redis_url, where = server.url, f"embedded Redis ({server.executable})"
        prefix = f"lrdemo-{uuid.uuid4().hex[:8]}"
        stack.callback(_drop_keys, redis_url, prefix)
        # Evidence and the audit witness of this throwaway prefix live and go with `tmp`.
        settings = Settings(redis_url=redis_url, key_prefix=prefix,
                            evidence_dir=tmp / "evidence", audit_witness_dir=tmp / "witness")
        created = ensure_signing_keys(settings, embedded=not os.environ.get("LR_REDIS_URL"))
        if created is not None:
            print(announce_keys(created), file=sys.stderr)
        plane = ControlPlane.from_settings(settings)
        stack.callback(plane.close)
        api = stack.enter_context(ServerThread(plane))
        analyst = create_user(plane.client, plane.keys, "alice.analyst", ["advanced"])
        token = issue_token(plane.client, plane.keys, analyst)
        admin = create_user(plane.client, plane.keys, "bob.admin", ["admin"])
        admin_token = issue_token(plane.client, plane.keys, admin)
        agent = stack.enter_context(LocalAgent(
            DEMO_DEVICE, redis_url, key_prefix=prefix, log_path=tmp / "agent.log",
            public_key_file=settings.orchestrator_public_key_path(),
            env={"LR_QUARANTINE_DIR": str(tmp / "quarantine")}))
        scene = plant_scene(stack, tmp / "endpoint")
        echo("liveresponse demo: investigating a suspicious download on "
             f"{DEMO_DEVICE}\n")
        echo(f"  broker and state  {where}")
        echo(f"  orchestrator      {api.url} (in this process)")
        echo(f"  agent             lr-agent --device-id {DEMO_DEVICE} (pid {agent.pid})")
        echo(f"  planted           {scene.suspect}")
        echo(f"                    pid {scene.holder.pid} holds it open, connected to "
             f"{scene.c2[0]}:{scene.c2[1]}")
        with ApiClient(api.url, admin_token) as admin_client:
            item = admin_client.library_add(SCRIPT_NAME, shipped_file(SCRIPT_NAME),
                                            description="Linux persistence spots")
        echo(f"  library           {SCRIPT_NAME} (sha256 {item['sha256'][:16]}…), "
             "added by bob.admin")
        echo("")
        with ApiClient(api.url, token) as client:
            return _investigate(client, scene, echo)


def _investigate(client: ApiClient, scene: Scene, echo: Callable[[str], None]) -> int:
    echo(f"## 1. Start a live response session\n$ lr session open {DEMO_DEVICE}")
    session = client.open_session(DEMO_DEVICE)["id"]
    echo(f"session {session} opened by alice.analyst\n")
    ok = True

    def step(title: str | None, line: str,
             keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
        nonlocal ok
        echo((f"## {title}\n" if title else "") + f"{DEMO_DEVICE}> {line}")
        record = client.run(session, line)
        shown = keep(record) if keep and record.get("result") else record
        echo(render_record(shown) + "\n")
        ok = ok and record.get("status") == "completed"
        return record

    def check(what: str, holds: bool) -> None:
        nonlocal ok
        echo(f"   (checked independently: {what}: {'yes' if holds else 'NO'})\n")
        ok = ok and holds

    pid = scene.holder.pid
    suspect_sha = hashlib.sha256(scene.suspect.read_bytes()).hexdigest()
    step("2. Inspect the file system", f"dir {scene.downloads}")
    step(None, f"fileinfo {scene.suspect}")
    step("3. Hash the file for threat intelligence", f"getfilehash {scene.suspect} --algo all")
    got = step("4. Collect the file for offline analysis", f"getfile {scene.suspect}")
    stored = (got.get("result") or {}).get("evidence_sha256")
    check("the evidence store holds the very bytes (sha256 on arrival = the file's)",
          stored == suspect_sha)
    step("5. Investigate processes", "processes",
         keep=lambda r: _only(r, "processes", lambda p: SUSPECT_NAME in " ".join(p["cmdline"])))
    step("6. Investigate network connections", "netstat",
         keep=lambda r: _only(r, "connections", lambda c: c["pid"] == pid))
    step("7. Remediate: end the process", f"kill {pid}")
    check(f"pid {pid} is gone", _wait_gone(scene.holder))
    quarantined = step(None, f"remediate {scene.suspect}")
    qid = str((quarantined.get("result") or {}).get("qid"))
    check(f"{scene.suspect} is gone from the downloads folder", not scene.suspect.exists())
    echo("   (an aside: quarantine is reversible)")
    step(None, f"undo {qid}")
    check("the restored file has the same sha256",
          scene.suspect.exists()
          and hashlib.sha256(scene.suspect.read_bytes()).hexdigest() == suspect_sha)
    step(None, f"remediate {scene.suspect}")
    step(None, f"findfile {SUSPECT_NAME} --path {scene.root}")
    ran = step("8. Run a custom script from the library",
               f"runscript {SCRIPT_NAME} -- {scene.root}")
    stdout = str((ran.get("result") or {}).get("stdout") or "")
    check(f"the script reports the planted cron entry {CRON_NAME}", CRON_NAME in stdout)
    client.close_session(session)
    verdict = client.audit_verify()
    trail = client.audit(session=session)
    echo(f"## 9. Audit and close\n$ lr session close {session}\nsession closed")
    echo(f"$ lr audit show --session {session}\n{len(trail)} entries recorded")
    echo(f"$ lr audit verify\n{render_verdict(verdict)}")
    ok = ok and bool(verdict.get("ok"))
    echo("\ndemo " + ("completed: every step ran and the audit chain verifies"
                      if ok else "FAILED: see the steps above"))
    return 0 if ok else 1


def _only(record: dict[str, Any], field: str,
          wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The record with its `field` list cut to the rows the analyst looks at."""
    result = dict(record["result"])
    result[field] = [row for row in result[field] if wanted(row)]
    return {**record, "result": result}


def _wait_connected(pid: int, c2: tuple[str, int], timeout_s: float = 10.0) -> None:
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            raise RuntimeError("the planted process died before connecting") from None
        if any(c.raddr and (c.raddr.ip, c.raddr.port) == c2 for c in conns):
            return
        time.sleep(0.02)
    raise RuntimeError("the planted process did not connect in time")


def _wait_gone(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> bool:
    try:
        proc.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        return False


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _drop_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        delete_matching(client, f"{prefix}:*")
        delete_matching(client, f"{queue_for(DEMO_DEVICE)}*")
    except redis.RedisError:
        pass  # the embedded server is already gone, and its data with it
