"""`lr playbook validate|run|runs|show|list`: playbooks, run by the orchestrator worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.table import clean, format_table, format_time, shorten
from orchestrator.playbooks.model import load_playbook
from tasks.errors import CommandFailedError, UsageError

#: Seconds between looks at a run being followed.
POLL_S = 0.5
#: Widest rendered line shown in a run's table.
LINE_WIDTH = 60
#: Run states that are over.
FINAL = ("completed", "failed")


@click.group("playbook")
def playbook() -> None:
    """Validate and run playbooks; list and show their runs."""


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


@playbook.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_cli
def validate(cli: CliContext, file: Path) -> None:
    """Check FILE: its commands exist, its templates and conditions parse and name only
    declared inputs and earlier steps. Needs no orchestrator."""
    pb = load_playbook(_read(file), file.name)
    data = {"name": pb.name, "valid": True, "steps": [s.id for s in pb.steps],
            "inputs": {n: i.type for n, i in pb.inputs.items()}}
    cli.emit(data, lambda d: f"{d['name']}: valid ({len(d['steps'])} steps: "
                             f"{', '.join(d['steps'])})")


def _inputs(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise UsageError(f"--input {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


@playbook.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--device", help="The device to run it on.")
@click.option("--devices", "selector", help="Device ids and tag:NAME terms, comma separated "
              "(one run per device).")
@click.option("--input", "-i", "pairs", multiple=True, metavar="NAME=VALUE",
              help="An input (repeatable); lists are comma separated.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the runs until they end.")
@pass_cli
@click.pass_context
def run(ctx: click.Context, cli: CliContext, file: Path, device: str | None,
        selector: str | None, pairs: tuple[str, ...], wait: bool) -> None:
    """Start playbook FILE on --device D or on every device of --devices SELECTOR.

    The run executes on the orchestrator worker (`lr orchestrator worker`). Exits 0 when
    every run completed (or, with --no-wait, started).
    """
    if (device is None) == (selector is None):
        raise UsageError("name one --device or a --devices selector")
    text = _read(file)
    load_playbook(text, file.name)  # a broken file fails here, before any request
    body: dict[str, Any] = {"playbook": text, "inputs": _inputs(pairs)}
    body.update({"device_id": device} if device else {"devices": selector})
    runs = cli.client.start_playbook(body)["runs"]
    if not wait:
        cli.emit(runs, render_runs)
        return
    done = [follow(cli, r["run_id"]) for r in runs]
    cli.emit(done if selector else done[0],
             lambda d: "\n\n".join(render_run(r) for r in (d if selector else [d])))
    failed = [r for r in done if r["status"] != "completed"]
    if failed:
        ctx.exit(CommandFailedError.exit_code)


def follow(cli: CliContext, run_id: str) -> dict[str, Any]:
    """Poll a run until it ends; each step's change is one stderr line (not with --json)."""
    seen: dict[str, str] = {}
    while True:
        run = cli.client.playbook_run(run_id)
        for step in run["steps"]:
            status = step["status"]
            if seen.get(step["id"]) != status and status != "pending":
                seen[step["id"]] = status
                if not cli.json_output:
                    click.echo(f"{run_id} {clean(step['id'])}: {status}"
                               + _waiting_hint(step), err=True)
        if run["status"] in FINAL:
            return run
        time.sleep(POLL_S)


def _waiting_hint(step: dict[str, Any]) -> str:
    held = [c["command_id"] for c in step["commands"] if c["status"] == "pending-approval"]
    return f" (a second person runs `lr approve {held[0]}`)" if held else ""


@playbook.command("runs")
@pass_cli
def runs(cli: CliContext) -> None:
    """Playbook runs on devices you may view, newest first."""
    cli.emit(cli.client.playbook_runs(), render_runs)


@playbook.command("show")
@click.argument("run_id", metavar="RUN_ID")
@pass_cli
def show(cli: CliContext, run_id: str) -> None:
    """One run: each step's rendered line, status, result summary and command id."""
    cli.emit(cli.client.playbook_run(run_id), render_run)


@playbook.command("list")
@pass_cli
def list_registered(cli: CliContext) -> None:
    """The registered playbooks (LR_PLAYBOOK_DIR) alerts may start, with their rules."""
    cli.emit(cli.client.playbooks(), lambda items: format_table(
        ["NAME", "FILE", "RULES", "DESCRIPTION"],
        [[i["name"] or "(invalid)", i["file"], ",".join(i["rules"]),
          shorten(clean(i["description"] or i["error"]), 60)] for i in items],
    ) if items else "no registered playbook")


def render_runs(items: list[dict[str, Any]]) -> str:
    if not items:
        return "no playbook run"
    return format_table(
        ["RUN", "PLAYBOOK", "DEVICE", "USER", "STATUS", "STARTED", "RULE"],
        [[r["run_id"], r["playbook"], r["device_id"], r["user"], r["status"],
          format_time(r["created_at"]), r.get("rule")] for r in items])


def render_run(r: dict[str, Any]) -> str:
    head = (f"run {r['run_id']}: {clean(r['playbook'])} on {clean(r['device_id'])} as "
            f"{clean(r['user'])}: {r['status']}" + (f" ({clean(r['error'])})" if r.get("error")
                                                      else ""))
    rows = []
    for step in r["steps"]:
        commands = step["commands"] or [None]
        for c in commands:
            rows.append([step["id"], c["status"] if c else step["status"],
                         shorten(clean(c["line"]), LINE_WIDTH) if c else "-",
                         shorten(clean(c["error"] or c["summary"]), 70) if c
                         else clean(step.get("reason") or ""),
                         c["command_id"] if c else "-"])
    table = format_table(["STEP", "STATUS", "LINE", "RESULT", "COMMAND ID"], rows)
    return f"{head}\n{table}"
