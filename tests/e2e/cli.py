"""Driving `lr` in-process against a live stack: the invoker type and result checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

#: `lr(*args, token=None, input=None)`: run the CLI as the stack's admin or as `token`.
Lr = Callable[..., Result]


def cli_env(tmp_path: Path) -> dict[str, str | None]:
    """An environment isolated from the user's own LR_* settings."""
    return {"LR_DATA_DIR": str(tmp_path / "lr-home"), "LR_API_URL": None, "LR_TOKEN": None}


def ok(result: Result) -> Result:
    """`result`, asserting the command exited 0."""
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result
