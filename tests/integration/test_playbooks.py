"""Playbook runs end to end: API, a real orchestrator worker process, real agents, real files.

The worker is `lr orchestrator worker` as a child process (so it can be SIGKILLed mid-run);
the agents are real `lr-agent` processes; the files and the processes holding them are real.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.playbooks.orders import RUN_TASK, RunOrder, orchestrator_queue, sign_order
from orchestrator.playbooks.runs import step_command_id
from tasks import clock
from tasks.app import make_celery_app
from tasks.signing import KeyPair
from tests.run_worker import RunWorkerProcess
from tests.stack import Stack, new_device_id, own_prefix_stack

SHIPPED = Path(__file__).resolve().parents[2] / "playbooks"
#: Seconds a run may take here (its agent answers in milliseconds).
RUN_TIMEOUT_S = 40.0

HELD = """
name: held-kill
inputs:
  path: {type: path, required: true}
  pid: {type: int, required: true}
steps:
  - {id: hash, line: "getfilehash {{ inputs.path }}"}
  - {id: stop, line: "kill {{ inputs.pid }}"}
"""


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys: KeyPair) -> Iterator[Stack]:
    """API + two agents (the second tagged critical: kill waits for approval there)."""
    devices = [new_device_id("pb"), new_device_id("pbcrit")]
    with own_prefix_stack(redis_url, devices, tmp_path_factory.mktemp("playbooks"),
                          signing=signing_keys, command_expiry_s=10.0,
                          playbook_lease_s=1.5, playbook_dir=SHIPPED) as st:
        st.tag(devices[1], "critical")
        yield st


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunWorkerProcess]:
    with RunWorkerProcess(stack, tmp_path_factory.mktemp("worker") / "worker.log") as w:
        yield w


@pytest.fixture(scope="module")
def devices(stack: Stack) -> list[str]:
    return list(stack.agents)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A real file, and a real process that holds it open."""
    path = tmp_path / "invoice 2025; rm -rf ~.exe"  # spaces and a shell's specials, on purpose
    path.write_bytes(b"MZ not really a program\n" * 100)
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; f = open(sys.argv[1], 'rb'); print('ready', flush=True); "
         "time.sleep(300)", str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    try:
        yield path, proc
    finally:
        proc.kill()
        proc.wait()


def _sha256sum(path: Path) -> str:
    return subprocess.run(["sha256sum", str(path)], check=True, capture_output=True,
                          text=True).stdout.split()[0]


def _start(stack: Stack, text: str, device: str, inputs: dict[str, Any],
           token: str | None = None) -> dict[str, Any]:
    with stack.client(token) as http:
        resp = http.post("/playbooks/runs", json={"playbook": text, "device_id": device,
                                                  "inputs": inputs})
    assert resp.status_code == 202, resp.text
    (run,) = resp.json()["runs"]
    return run  # type: ignore[no-any-return]


def _until(stack: Stack, run_id: str, done: Any, timeout_s: float = RUN_TIMEOUT_S
           ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with stack.client() as http:
            resp = http.get(f"/playbooks/runs/{run_id}")
        run = resp.json() if resp.status_code == 200 else None  # 404: not (re)written yet
        if run is not None and done(run):
            return run  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, run
        time.sleep(0.2)


def _finished(stack: Stack, run_id: str) -> dict[str, Any]:
    return _until(stack, run_id, lambda r: r["status"] in ("completed", "failed"))


def _statuses(run: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in run["steps"]}


def _actions(stack: Stack, **filters: str) -> list[str]:
    return [e.action for e in stack.plane.audit.read(**filters)]


def test_an_ioc_hit_is_collected_its_holder_killed_and_the_file_quarantined(
        stack: Stack, worker: RunWorkerProcess, devices: list[str],
        holder: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, proc = holder
    sha = _sha256sum(path)
    text = (SHIPPED / "suspicious-file.yml").read_text()
    run = _start(stack, text, devices[0], {"path": str(path), "iocs": f"{'b' * 64},{sha}"})
    run = _finished(stack, run["run_id"])
    assert run["status"] == "completed", run
    assert _statuses(run) == {"hash": "completed", "collect": "completed",
                              "holders": "completed", "kill": "completed",
                              "quarantine": "completed"}
    assert proc.wait(timeout=10) != 0  # ended by the kill step
    assert not path.exists()  # moved into the agent's vault
    steps = {s["id"]: s for s in run["steps"]}
    (kill,) = steps["kill"]["commands"]
    assert kill["line"] == f"kill {proc.pid}"
    assert sha in steps["hash"]["commands"][0]["summary"]
    # The file's name reached the agent as one argument: quoted, never split or run.
    assert steps["hash"]["commands"][0]["line"].startswith("getfilehash '")
    evidence = list((stack.plane.settings.evidence_path()).rglob("*"))
    assert any(sha in p.name for p in evidence), evidence


def test_without_an_ioc_hit_nothing_is_remediated(
        stack: Stack, worker: RunWorkerProcess, devices: list[str],
        holder: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, proc = holder
    text = (SHIPPED / "suspicious-file.yml").read_text()
    run = _finished(stack, _start(stack, text, devices[0],
                                  {"path": str(path), "iocs": "c" * 64})["run_id"])
    assert run["status"] == "completed", run
    assert _statuses(run) == {"hash": "completed", "collect": "completed",
                              "holders": "skipped", "kill": "skipped", "quarantine": "skipped"}
    assert path.exists() and proc.poll() is None
    skipped = [e for e in stack.plane.audit.read(device=devices[0])
               if e.action == "playbook.step_skipped" and e.details.get("run") == run["run_id"]]
    assert sorted(e.details["step"] for e in skipped) == ["holders", "kill", "quarantine"]


def test_a_held_step_pauses_the_run_which_resumes_on_a_new_worker_after_a_sigkill(
        stack: Stack, worker: RunWorkerProcess, devices: list[str], tmp_path: Path,
        holder: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, victim = holder
    alice, bob = stack.user("alice", ["advanced"]), stack.user("bob", ["advanced"])
    run = _start(stack, HELD, devices[1], {"path": str(path), "pid": str(victim.pid)},
                 token=alice)
    run_id = run["run_id"]
    run = _until(stack, run_id, lambda r: r["status"] == "waiting-approval")
    assert _statuses(run) == {"hash": "completed", "stop": "pending-approval"}
    hash_id, kill_id = step_command_id(run_id, "hash"), step_command_id(run_id, "stop")

    worker.kill()  # mid-run, while the run waits for a second person
    with RunWorkerProcess(stack, tmp_path / "worker2.log"):
        deadline = time.monotonic() + 20
        while "playbook.resumed" not in _actions(stack, device=devices[1]):
            assert time.monotonic() < deadline, "no worker resumed the run"
            time.sleep(0.2)
        assert victim.poll() is None  # still held: nobody approved yet
        with stack.client(bob) as http:
            resp = http.post(f"/commands/{kill_id}/approve")
        assert resp.status_code == 200, resp.text
        run = _finished(stack, run_id)
    worker.start()  # the module's worker, for the tests after this one
    assert run["status"] == "completed", run
    assert _statuses(run) == {"hash": "completed", "stop": "completed"}
    assert victim.wait(timeout=10) != 0
    # Each step's command was requested once and started once, across both workers.
    assert _actions(stack, command=hash_id).count("command.requested") == 1
    assert _actions(stack, command=kill_id).count("command.requested") == 1
    assert stack.ledger(devices[1]).contains(hash_id) and stack.ledger(devices[1]).contains(kill_id)


def test_forged_or_altered_orders_in_the_workers_queue_are_refused_and_audited(
        stack: Stack, worker: RunWorkerProcess, devices: list[str]) -> None:
    p = stack.plane
    now = clock.now()
    order = RunOrder(run_id="Rforged000001", user="admin", device_id=devices[0],
                     playbook="triage", playbook_sha256="0" * 64, inputs={},
                     issued_at=now, expires_at=now + 600)
    signed = sign_order(p, order.model_copy(update={"run_id": "Rforged000002"}))
    altered = signed.model_copy(update={"inputs": {"path": "/etc/shadow"}})
    text = (SHIPPED / "triage.yml").read_text()
    p.client.set(p.keys.playbook_text("1" * 64), text)  # stored under a digest it does not have
    mismatched = sign_order(p, order.model_copy(update={"run_id": "Rforged000003",
                                                        "playbook_sha256": "1" * 64}))
    attacker = make_celery_app(p.settings.redis_url or "", name="attacker")
    try:
        for forged in (order, altered, mismatched):
            attacker.send_task(RUN_TASK, args=[forged.model_dump(mode="json")],
                               queue=orchestrator_queue(p.keys.prefix))
    finally:
        attacker.close()
    deadline = time.monotonic() + 20
    while True:
        refused = {e.details.get("run"): e.details.get("reason")
                   for e in p.audit.read(actor="admin") if e.action == "playbook.order_refused"}
        if len(refused) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert refused == {"Rforged000001": "unsigned", "Rforged000002": "bad_signature",
                       "Rforged000003": "playbook_tampered"}
    assert not [e for e in p.audit.read(device=devices[0])
                if e.action == "session.opened" and str(e.details.get("run", "")).startswith(
                    "Rforged")]


def test_an_alert_from_the_automation_account_starts_the_matching_playbook(
        stack: Stack, worker: RunWorkerProcess, devices: list[str]) -> None:
    siem, viewer = stack.user("siem", ["automation"]), stack.user("vera", ["viewer"])
    alert = {"device": devices[0], "rule": "triage", "id": "SIEM-42",
             "indicators": {"user": "ann"}}
    with stack.client(viewer) as http:
        resp = http.post("/alerts", json=alert)
    assert resp.status_code == 403, resp.text
    assert "alert.submit" in resp.json()["error"]["message"] or resp.json()["error"]["code"]
    assert _actions(stack, actor="vera") == ["access.denied"]
    with stack.client(siem) as http:
        resp = http.post("/alerts", json=alert)
    assert resp.status_code == 202, resp.text
    (run,) = resp.json()["runs"]
    assert (run["playbook"], run["user"], run["rule"]) == ("triage", "siem", "triage")
    entries = stack.plane.audit.read(actor="siem")
    received = [e for e in entries if e.action == "alert.received"]
    started = [e for e in entries if e.action == "playbook.started"]
    assert received[0].details["rule"] == "triage" and received[0].details["alert_id"] == "SIEM-42"
    assert started[0].details["rule"] == "triage" and started[0].details["run"] == run["run_id"]
    run = _finished(stack, run["run_id"])
    assert run["status"] == "completed", run
    assert set(_statuses(run).values()) <= {"completed", "failed"}
    assert _statuses(run)["processes"] == "completed"


def test_a_replayed_order_never_sends_a_step_again_even_with_its_record_deleted(
        stack: Stack, worker: RunWorkerProcess, devices: list[str], tmp_path: Path) -> None:
    p = stack.plane
    target = tmp_path / "f.txt"
    target.write_text("x")
    text = "name: one\nsteps:\n  - {id: hash, line: 'getfilehash " + str(target) + "'}\n"
    run = _finished(stack, _start(stack, text, devices[0], {})["run_id"])
    assert run["status"] == "completed", run
    command_id = step_command_id(run["run_id"], "hash")
    order = json.loads(p.client.get(p.keys.playbook_run(run["run_id"])))["order"]
    # A Redis writer erases what the orchestrator knows of the run, then replays its order.
    p.client.delete(p.keys.command(command_id), p.keys.playbook_run(run["run_id"]))
    attacker = make_celery_app(p.settings.redis_url or "", name="attacker")
    try:
        attacker.send_task(RUN_TASK, args=[order], queue=orchestrator_queue(p.keys.prefix))
    finally:
        attacker.close()
    replayed = _finished(stack, run["run_id"])
    assert replayed["status"] == "failed"
    assert "sent before" in (replayed["error"] or ""), replayed
    assert _actions(stack, command=command_id).count("command.requested") == 1
