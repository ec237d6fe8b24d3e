"""`lr library add|list|remove`: the files `put` writes and `runscript` runs (by API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from orchestrator.cli.context import CliContext, pass_cli
from orchestrator.cli.table import format_table, format_time
from orchestrator.files.library import valid_name

#: Hex digits of a sha256 shown in the listing (`--json` has them all).
SHA_SHOWN = 16


@click.group("library")
def library() -> None:
    """Files put and runscript take, stored by sha256 (adding and removing: admin)."""


@library.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True,
                                        path_type=Path))
@click.option("--name", help="Name in the library [default: the file's name].")
@click.option("--description", default="", help="What the file is for.")
@click.option("--replace", is_flag=True, help="Replace the content of an existing name.")
@pass_cli
def library_add(cli: CliContext, file: Path, name: str | None, description: str,
                replace: bool) -> None:
    """Add FILE to the library (streamed; the orchestrator hashes it on the way)."""
    # Checked here too: a name with a slash would never reach the route to be refused.
    item = cli.client.library_add(valid_name(name or file.name), file,
                                  description=description, replace=replace)
    cli.emit(item, _added)


@library.command("list")
@pass_cli
def library_list(cli: CliContext) -> None:
    """Every library file with its size, sha256, and who added it when."""
    cli.emit(cli.client.library(), lambda items: format_table(
        ["NAME", "BYTES", "SHA256", "ADDED BY", "ADDED", "DESCRIPTION"],
        [[i["name"], i["size_bytes"], i["sha256"][:SHA_SHOWN] + "…", i["added_by"],
          format_time(i["added_at"]), i["description"]] for i in items],
        right=[1]) if items else "the library is empty (add files with `lr library add FILE`)")


@library.command("remove")
@click.argument("name")
@pass_cli
def library_remove(cli: CliContext, name: str) -> None:
    """Remove NAME from the library (its content too, unless another name uses it)."""
    item = cli.client.library_remove(valid_name(name))
    cli.emit(item, lambda i: f"removed {i['name']} (sha256 {i['sha256']})"
                             + ("" if i["content_deleted"] else
                                "; its content stays: another name uses it"))


def _added(item: dict[str, Any]) -> str:
    replaced = item.get("replaced_sha256")
    was = f", replacing sha256 {replaced}" if replaced else ""
    return f"added {item['name']} ({item['size_bytes']} bytes, sha256 {item['sha256']}{was})"
