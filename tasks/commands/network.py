"""Arguments and results of the network commands: netstat."""

from __future__ import annotations

from typing import Literal

from tasks.commands.base import CommandArgs, CommandResult

Proto = Literal["tcp", "tcp6", "udp", "udp6"]


class NetstatArgs(CommandArgs):
    pass


class Connection(CommandResult):
    proto: Proto
    local_address: str
    local_port: int
    remote_address: str | None
    remote_port: int | None
    state: str
    pid: int | None
    process_name: str | None


class NetstatResult(CommandResult):
    connections: list[Connection]
    #: True when some sockets' owners could not be read (the agent lacks privilege).
    partial: bool = False
