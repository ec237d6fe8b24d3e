"""The context object every `lr` subcommand receives: settings, output mode, API client."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from config.settings import Settings
from orchestrator.cli.client import ApiClient


@dataclass
class CliContext:
    """What the `lr` group hands its subcommands; the API client is built on first use."""

    settings: Settings
    json_output: bool = False
    api_url: str = ""
    token: str | None = None
    _client: ApiClient | None = field(default=None, repr=False)

    @property
    def client(self) -> ApiClient:
        """The API client, connected on first use (commands that talk to Redis never build it)."""
        if self._client is None:
            self._client = ApiClient(self.api_url or self.settings.api_url, self.token)
        return self._client

    def close(self) -> None:
        """Release the API client, if one was built."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit(self, data: Any, human: Callable[[Any], str]) -> None:
        """Print `data` as JSON with `--json`, else as `human(data)` renders it."""
        click.echo(to_json(data) if self.json_output else human(data))


def to_json(data: Any) -> str:
    """The machine form of anything `lr` prints."""
    return json.dumps(data, indent=2)


#: Decorator handing a command the CliContext of the `lr` group.
pass_cli = click.make_pass_decorator(CliContext)
