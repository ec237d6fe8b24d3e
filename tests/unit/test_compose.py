"""docker-compose.yml runs only what the package provides, with the options it has.

No Docker engine is needed: the file is parsed, each service's command is resolved in the
real click trees of `lr` and `lr-agent` (every subcommand and option must exist and parse),
and the Dockerfile is checked to install the package whose entry points those are.
"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from orchestrator.cli.main import main as lr_main
from tasks.queues import validate_device_id
from worker_agent.main import main as agent_main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
#: The console scripts the package installs, and the click command behind each.
ENTRY_POINTS: dict[str, click.Command] = {"lr": lr_main, "lr-agent": agent_main}
#: Programs a service may run besides ours: the Redis image's server.
OTHER_PROGRAMS = {"redis-server"}
#: What a one-shot `sh -c` script may run besides our entry points.
SHELL_UTILITIES = {"test", "cp"}


def resolve(program: str, args: list[str]) -> click.Context:
    """Parse `args` with the real click command of `program`, walking its groups; raises
    click's UsageError (or AssertionError for an unknown subcommand) when they do not fit."""
    cmd = ENTRY_POINTS[program]
    path = [program]
    while isinstance(cmd, click.Group):
        assert args and not args[0].startswith("-"), f"{' '.join(path)} needs a subcommand"
        name, args = args[0], args[1:]
        sub = cmd.commands.get(name)
        assert sub is not None, f"{' '.join(path)} has no subcommand {name!r}"
        cmd, path = sub, [*path, name]
    return cmd.make_context(" ".join(path), list(args))


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a one-line `sh -c` script (split on ;, && and ||)."""
    words = shlex.split(script)
    commands: list[list[str]] = [[]]
    for word in words:
        if word in (";", "&&", "||"):
            commands.append([])
        elif word.endswith(";"):
            commands[-1].append(word[:-1])
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def service_commands(name: str) -> list[list[str]]:
    """The commands a service runs: its `command`, or each command of its `sh -c` script."""
    command = SERVICES[name]["command"]
    assert isinstance(command, list), f"{name}: write command as a list, not a shell string"
    if command[:2] == ["sh", "-c"]:
        assert len(command) == 3, f"{name}: sh -c takes one script"
        return shell_commands(command[2])
    return [command]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_runs_a_command_the_package_provides(service: str) -> None:
    scripted = SERVICES[service]["command"][:2] == ["sh", "-c"]
    for argv in service_commands(service):
        program, args = argv[0], argv[1:]
        if program in ENTRY_POINTS:
            resolve(program, args)
        elif scripted:
            assert program in SHELL_UTILITIES, f"{service}: runs {program!r}"
        else:
            assert program in OTHER_PROGRAMS, f"{service}: runs {program!r}"
    if scripted:
        assert any(argv[0] in ENTRY_POINTS for argv in service_commands(service))


def test_resolve_rejects_what_the_cli_does_not_have() -> None:
    with pytest.raises(AssertionError):
        resolve("lr", ["orchestrator", "no-such-command"])
    with pytest.raises(click.UsageError):
        resolve("lr", ["flower", "--no-such-option"])
    with pytest.raises(click.UsageError):
        resolve("lr", ["flower", "--port", "0"])
    with pytest.raises(click.UsageError):
        resolve("lr-agent", [])  # --device-id is required


def test_the_fleet_has_what_the_design_names() -> None:
    programs = {name: service_commands(name)[0][:3] for name in SERVICES}
    assert programs["redis"][0] == "redis-server"
    assert ["lr", "orchestrator", "serve"] in programs.values()
    assert ["lr", "orchestrator", "worker"] in programs.values()
    assert any(p[:2] == ["lr", "flower"] for p in programs.values())
    assert "keys" in SERVICES


def agents() -> dict[str, str]:
    """Agent service name → its device id, from the parsed `lr-agent` command line."""
    out = {}
    for name in SERVICES:
        argv = service_commands(name)[0]
        if argv[0] == "lr-agent":
            out[name] = resolve("lr-agent", argv[1:]).params["device_id"]
    return out


def test_two_agents_with_distinct_valid_device_ids() -> None:
    found = agents()
    assert len(found) == 2
    assert len(set(found.values())) == 2
    for device_id in found.values():
        validate_device_id(device_id)


def test_each_agent_keeps_its_state_in_a_volume_of_its_own() -> None:
    state_volumes = []
    for name in agents():
        env = SERVICES[name]["environment"]
        mounts = dict(reversed(v.split(":")[:2]) for v in SERVICES[name]["volumes"])
        for setting in ("LR_LEDGER_DIR", "LR_QUARANTINE_DIR"):
            directory = env[setting]
            mount = next(m for m in mounts if directory == m or directory.startswith(m + "/"))
            state_volumes.append(mounts[mount])
        assert "LR_SIGNING_KEY_FILE" not in env  # agents never hold the private key
        assert all(not v.startswith("signing-key:") for v in SERVICES[name]["volumes"])
    assert len(set(state_volumes)) == len(agents())  # one volume per agent, not shared


def volume_names(service: dict[str, Any]) -> list[str]:
    return [v.split(":")[0] for v in service.get("volumes", [])]


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used = {v for s in SERVICES.values() for v in volume_names(s)}
    assert used == declared
    assert all(not v.startswith(("/", ".")) for v in used)  # named volumes, no host paths
    mounts = {(name, v) for name, s in SERVICES.items() for v in volume_names(s)}
    for needed in [("redis", "redis-data"), ("orchestrator", "signing-key"),
                   ("orchestrator", "audit-witness"), ("orchestrator", "evidence"),
                   ("orchestrator-worker", "signing-key"), ("orchestrator-worker", "evidence"),
                   ("orchestrator-worker", "audit-witness")]:
        assert needed in mounts


def test_redis_persists_with_aof() -> None:
    argv = service_commands("redis")[0]
    assert argv[argv.index("--appendonly") + 1] == "yes"


def test_every_required_variable_is_named_in_the_header() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    header = "\n".join(line for line in text[:text.index("\nservices:")].splitlines()
                       if line.startswith("#"))
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required == {"LR_REDIS_PASSWORD", "LR_FLOWER_BASIC_AUTH"}
    for name in required:
        assert name in header, name


def test_the_image_installs_the_package_with_its_entry_points() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in
                   cfg["options.entry_points"]["console_scripts"].strip().splitlines())
    for program, command in ENTRY_POINTS.items():
        module, attr = scripts[program.strip()].split(":")
        assert getattr(__import__(module, fromlist=[attr]), attr) is command
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install .*'\.\[flower\]'", dockerfile, re.M)
    for package in ("config", "tasks", "orchestrator", "worker_agent"):
        assert re.search(rf"^COPY {package} ", dockerfile, re.M), package
    assert all(s.get("build") == "." for n, s in SERVICES.items() if n != "redis")
