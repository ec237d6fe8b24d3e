"""`lr run --devices` and `lr batch`: one command on many devices, followed to its end."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli, to_json
from orchestrator.cli.errors import describe_error, error_from_wire
from orchestrator.cli.render import render_record
from orchestrator.cli.table import MISSING, clean, format_table, format_time
from tasks.errors import FleetIncompleteError, LiveResponseError

#: Seconds between two looks at a batch being followed.
POLL_S = 0.5
#: Widest summary cell in the batch table.
SUMMARY_WIDTH = 80


def run_batch(ctx: click.Context, cli: CliContext, selector: str, line: str,
              expires_s: float | None) -> None:
    """Start the batch, show progress while outcomes arrive, then the table (or JSON)."""
    batch = cli.client.start_batch(selector, line, expires_s)
    batch = follow_batch(cli, batch)
    show_batch(cli, batch)
    incomplete = batch_problem(batch)
    if incomplete is not None:
        ctx.exit(incomplete.exit_code)


def follow_batch(cli: CliContext, batch: dict[str, Any]) -> dict[str, Any]:
    """Poll until every device's outcome is in; a counter on stderr when it is a terminal.

    Ctrl-C stops following (the batch goes on) and says how to look at it again.
    """
    bar = not cli.json_output and sys.stderr.isatty()
    try:
        while not batch.get("finished"):
            if bar:
                sys.stderr.write("\r" + progress_line(batch))
                sys.stderr.flush()
            time.sleep(POLL_S)
            batch = cli.client.batch(str(batch["id"]))
    except KeyboardInterrupt:
        click.echo(f"\nstopped following batch {batch['id']}; it goes on: "
                   f"'lr batch show {batch['id']}', 'lr batch cancel {batch['id']}'", err=True)
        raise SystemExit(130) from None
    if bar:
        sys.stderr.write("\r" + progress_line(batch) + "\n")
    return batch


def progress_line(batch: dict[str, Any]) -> str:
    """`batch 3f2a… [#####.....] 12/20 done (completed 11, failed 1, queued 8)`."""
    entries = batch.get("entries") or []
    total = len(entries) or int(batch.get("total") or 0)
    done = sum(1 for e in entries if _final(e))
    width = 20
    filled = int(width * done / total) if total else width
    counts = ", ".join(f"{k} {v}" for k, v in sorted((batch.get("counts") or {}).items()))
    return (f"batch {batch['id']} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done}/{total} done ({counts})")


def batch_problem(batch: dict[str, Any]) -> LiveResponseError | None:
    """FleetIncompleteError unless every device completed."""
    entries = batch.get("entries") or []
    other = [e for e in entries if e.get("status") != "completed"]
    if not other and entries:
        return None
    return FleetIncompleteError(
        f"batch {batch['id']}: {len(entries) - len(other)} of {len(entries)} devices completed",
        hint=f"see each device with 'lr batch show {batch['id']}'")


def show_batch(cli: CliContext, batch: dict[str, Any]) -> None:
    """JSON: a list of per-device records; a person: the table, then the totals line."""
    if cli.json_output:
        click.echo(to_json([device_record(e) for e in batch.get("entries") or []]))
        return
    click.echo(render_batch(batch))


def device_record(entry: dict[str, Any]) -> dict[str, Any]:
    """One device's record as `--json` lists it."""
    return {"device": entry["device"], "status": entry["status"],
            "command_id": entry.get("command_id"), "result": entry.get("result"),
            "error": entry.get("error")}


def render_batch(batch: dict[str, Any]) -> str:
    entries = batch.get("entries") or []
    rows = [[e["device"], e["status"], summary(batch, e)] for e in entries]
    counts = ", ".join(f"{v} {k}" for k, v in sorted((batch.get("counts") or {}).items()))
    head = (f"batch {batch['id']}: {clean(batch.get('line'))} on {len(entries)} devices "
            f"({counts or 'none'}) by {clean(batch.get('user'))} at "
            f"{format_time(batch.get('created_at'))}")
    return head + "\n" + format_table(["DEVICE", "STATUS", "SUMMARY"], rows)


def summary(batch: dict[str, Any], entry: dict[str, Any]) -> str:
    """One line about one device's outcome: the error, the one-line result, or its size."""
    if entry.get("error"):
        return _cut(describe_error(error_from_wire(entry["error"])))
    if entry.get("status") != "completed" or entry.get("result") is None:
        return MISSING
    record = {**entry, "command": entry.get("command") or batch.get("command")}
    try:
        lines = render_record(record).splitlines()
    except LiveResponseError as exc:
        return _cut(describe_error(exc))
    if len(lines) == 1:
        return _cut(lines[0])
    sizes = [f"{len(v)} {k}" for k, v in (entry["result"] or {}).items() if isinstance(v, list)]
    return _cut(", ".join(sizes) if sizes else f"{len(lines)} lines")


def _cut(text: str) -> str:
    text = clean(text)
    return text if len(text) <= SUMMARY_WIDTH else text[:SUMMARY_WIDTH - 1] + "…"


def _final(entry: dict[str, Any]) -> bool:
    return entry.get("status") == "denied" or (
        entry.get("status") not in ("queued", "running", "pending-approval")
        and bool(entry.get("recorded")))


@click.group("batch")
def batch_group() -> None:
    """Fleet batches: one command on many devices (`lr run --devices`)."""


@batch_group.command("list")
@pass_cli
def batch_list(cli: CliContext) -> None:
    """The newest batches with their counts."""
    batches = cli.client.batches()

    def human(items: list[dict[str, Any]]) -> str:
        if not items:
            return "no batches yet (lr run --devices SELECTOR 'LINE')"
        rows = [[b["id"], format_time(b.get("created_at")), b.get("user"), b.get("line"),
                 b.get("total"), ", ".join(f"{v} {k}" for k, v in sorted(b["counts"].items())),
                 "yes" if b.get("finished") else "no"] for b in items]
        return format_table(["ID", "CREATED", "USER", "LINE", "DEVICES", "COUNTS", "DONE"],
                            rows, right=[4])

    cli.emit(batches, human)


@batch_group.command("show")
@click.option("--wait", is_flag=True, help="Follow the batch until every device is done.")
@click.argument("batch_id", metavar="ID")
@pass_cli
@click.pass_context
def batch_show(ctx: click.Context, cli: CliContext, wait: bool, batch_id: str) -> None:
    """Live counts and each device's record (exit 0 only if every device completed)."""
    batch = cli.client.batch(batch_id)
    if wait:
        batch = follow_batch(cli, batch)
    show_batch(cli, batch)
    problem = batch_problem(batch) if batch.get("finished") else None
    if problem is not None:
        ctx.exit(problem.exit_code)


@batch_group.command("cancel")
@click.argument("batch_id", metavar="ID")
@pass_cli
def batch_cancel(cli: CliContext, batch_id: str) -> None:
    """Cancel every unfinished command of the batch (running ones are stopped)."""
    result = cli.client.cancel_batch(batch_id)

    def human(r: dict[str, Any]) -> str:
        lines = [f"batch {r['id']}: cancelled on {len(r['cancelled'])} devices"
                 + (f" ({', '.join(clean(d) for d in r['cancelled'])})" if r["cancelled"] else "")]
        lines += [f"  {clean(d)}: refused: {clean(why)}" for d, why in r["refused"].items()]
        return "\n".join(lines)

    cli.emit(result, human)
