"""The command registry: every command declared once, checked when the registry is built."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tasks.commands import accounts as acct
from tasks.commands import acquisition as acq
from tasks.commands import collect as col
from tasks.commands import content as ct
from tasks.commands import filesystem as fs
from tasks.commands import isolation as iso
from tasks.commands import library as lib
from tasks.commands import logs as lg
from tasks.commands import memory as mem
from tasks.commands import network as net
from tasks.commands import persistence as pers
from tasks.commands import processes as proc
from tasks.commands import remediation as rem
from tasks.commands import system as sysinfo
from tasks.commands import user_traces as traces
from tasks.commands.base import CommandArgs, CommandResult
from tasks.errors import InvalidResultError

#: Prefix of the Celery task name of each command (`lr.command.dir`, ...).
TASK_PREFIX = "lr.command."

#: Permission of read-only commands.
PERM_READ = "live.read"
#: Permission of commands that copy data off the endpoint.
PERM_COLLECT = "live.collect"
#: Permission of commands that write to the endpoint or run code there.
PERM_EXECUTE = "live.execute"
#: Permission of commands that end processes or remove files.
PERM_REMEDIATE = "live.remediate"
#: Permission of network containment.
PERM_ISOLATE = "live.isolate"
#: Administration (users, policy); flags that go past a safety list need it too (--force).
PERM_ADMIN = "admin"
#: Soft time limit of remediate and undo: a large tree may be copied across filesystems.
REMEDIATE_TIME_LIMIT_S = 600.0

#: Soft time limit of `getfile`: 3 GiB at a slow 1 MB/s, with room to spare.
GETFILE_TIME_LIMIT_S = 3600.0

#: Soft time limit of `collect` and `memdump`: as long as a getfile of the same size.
COLLECT_TIME_LIMIT_S = GETFILE_TIME_LIMIT_S

#: Result fields the orchestrator fills in once a command's file is stored (merge_receipt).
EVIDENCE_FIELDS = ("evidence_sha256", "evidence_path", "stored_at")

#: Platforms of commands that only Linux agents can run.
LINUX_ONLY = frozenset({"linux"})


@dataclass(frozen=True)
class Option:
    """A `--flag` of a command line mapped to an argument field."""

    flag: str
    field: str
    help: str = ""


@dataclass(frozen=True)
class CommandSpec:
    """One command: its models, who may run it, and how its line is written."""

    name: str
    summary: str
    args_model: type[CommandArgs]
    result_model: type[CommandResult]
    permission: str
    destructive: bool = False
    #: May run while the device is isolated (it needs nothing but the broker).
    allowed_while_isolated: bool = False
    #: May be sent to a device without a session (containment).
    device_level: bool = False
    #: Argument fields that need one more permission when set, e.g. (("force", PERM_ADMIN),).
    flag_permissions: tuple[tuple[str, str], ...] = ()
    #: The agent hands the handler every pid of its own (main process, pool, parent) to refuse,
    #: as it does for destructive commands: memdump must never read the agent's memory.
    protects_agent: bool = False
    #: Permissions needed on top of `permission`, whatever the arguments (memdump: reading a
    #: process's memory is collecting and, as much as running code, reaching into it).
    also_requires: tuple[str, ...] = ()
    #: The command's own soft time limit in seconds (long transfers); None: the default one.
    time_limit_s: float | None = None
    #: The agent streams a file back over the broker (`lr:xfer:<id>`); the orchestrator
    #: receives it into the evidence store while it waits for the outcome.
    sends_file: bool = False
    #: Acts on the session itself (its working directory): meaningless across a fleet.
    session_only: bool = False
    platforms: frozenset[str] = frozenset({"linux", "darwin", "windows"})
    positionals: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    #: Positionals that may be omitted (they must be last).
    optional_positionals: frozenset[str] = field(default_factory=frozenset)
    #: A tuple[str, ...] field that takes every word after `--` (a script's arguments).
    rest: str | None = None

    def permissions_for(self, args: CommandArgs) -> list[str]:
        """Every permission running these arguments needs: the command's, plus its flags'."""
        extra = [perm for name, perm in self.flag_permissions if getattr(args, name, None)]
        return [*self.permissions, *extra]

    @property
    def permissions(self) -> tuple[str, ...]:
        """Every permission the command needs whatever its arguments."""
        return (self.permission, *self.also_requires)

    def parse_result(self, data: Any) -> CommandResult:
        """`data` (a result as JSON) as this command's result model.

        Raises InvalidResultError naming the model and the first field that does not fit.
        """
        try:
            return self.result_model.model_validate(data)
        except ValidationError as exc:
            problems = exc.errors()
            first = problems[0]
            where = ".".join(str(part) for part in first["loc"]) or "the result itself"
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InvalidResultError(
                f"the {self.name} result does not fit {self.result_model.__name__}: "
                f"{where}: {first['msg']}{more}",
                hint="the agent may run another version of liveresponse than the orchestrator",
            ) from None

    def time_limit(self, default_s: float) -> float:
        """The soft time limit this command runs under, given the configured default."""
        return self.time_limit_s if self.time_limit_s is not None else default_s

    @property
    def task_name(self) -> str:
        """The Celery task name the agent registers and the orchestrator sends."""
        return TASK_PREFIX + self.name

    @property
    def usage(self) -> str:
        """One line: how to write this command."""
        parts = [self.name]
        for pos in self.positionals:
            parts.append(f"[{pos.upper()}]" if pos in self.optional_positionals else pos.upper())
        for opt in self.options:
            is_flag = self.args_model.model_fields[opt.field].annotation in (bool, "bool")
            parts.append(f"[{opt.flag}]" if is_flag else f"[{opt.flag} {opt.field.upper()}]")
        if self.rest:
            parts.append(f"[-- {self.rest.upper()}...]")
        return " ".join(parts)


class Registry(Mapping[str, CommandSpec]):
    """Read-only map of command name to spec, validated on construction."""

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self._specs: dict[str, CommandSpec] = {}
        for spec in specs:
            _check_spec(spec)
            if spec.name in self._specs:
                raise ValueError(f"command {spec.name!r} declared twice")
            self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> CommandSpec:
        return self._specs[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def _check_spec(spec: CommandSpec) -> None:
    fields = spec.args_model.model_fields
    named = list(spec.positionals) + [o.field for o in spec.options]
    named += [spec.rest] if spec.rest else []
    unknown = [n for n in named if n not in fields]
    if unknown:
        raise ValueError(f"{spec.name}: line names unknown fields {unknown}")
    if len(set(named)) != len(named):
        raise ValueError(f"{spec.name}: a field is named twice on the line")
    missing = [n for n, f in fields.items() if f.is_required() and n not in named]
    if missing:
        raise ValueError(f"{spec.name}: required fields not on the line: {missing}")
    seen_optional = False
    for pos in spec.positionals:
        if pos in spec.optional_positionals:
            seen_optional = True
        elif seen_optional:
            raise ValueError(f"{spec.name}: required positional {pos!r} after an optional one")
    if spec.rest and fields[spec.rest].is_required():
        raise ValueError(f"{spec.name}: the field after `--` ({spec.rest}) needs a default")
    for opt in spec.options:
        if not opt.flag.startswith("--"):
            raise ValueError(f"{spec.name}: option {opt.flag!r} must start with --")
    missing_evidence = [f for f in EVIDENCE_FIELDS if f not in spec.result_model.model_fields]
    if spec.sends_file and missing_evidence:
        raise ValueError(f"{spec.name}: sends a file, but its result model lacks "
                         f"{missing_evidence} (the orchestrator adds where the file went)")
    if not spec.args_model.model_config.get("frozen") or spec.args_model.model_config.get(
        "extra"
    ) != "forbid":
        raise ValueError(f"{spec.name}: argument model must be frozen and forbid extras")


def build_registry() -> Registry:
    """Every command liveresponse knows, in the order `help` lists them."""
    return Registry(
        [
            CommandSpec(
                "dir", "List a directory (symlinks shown, not followed)",
                fs.DirArgs, fs.DirResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",), optional_positionals=frozenset({"path"}),
            ),
            CommandSpec(
                "cd", "Change the session's working directory",
                fs.CdArgs, fs.CdResult, PERM_READ, allowed_while_isolated=True,
                session_only=True, positionals=("path",),
            ),
            CommandSpec(
                "fileinfo", "Stat a file and hash it (sha256, sha1, md5)",
                fs.FileInfoArgs, fs.FileInfoResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",),
            ),
            CommandSpec(
                "findfile", "Find files by name glob, sha256, mtime, size or content, bounded",
                fs.FindFileArgs, fs.FindFileResult, PERM_READ, allowed_while_isolated=True,
                positionals=("name",), optional_positionals=frozenset({"name"}),
                options=(Option("--path", "path", "directory to search from"),
                         Option("--max", "max", "stop after this many matches"),
                         Option("--sha256", "sha256", "only files with this sha256"),
                         Option("--newer", "newer", "modified after 2h, 7d, an ISO time, @EPOCH"),
                         Option("--size", "size", "+10M, -4k, 1k..1M or an exact size"),
                         Option("--grep", "grep", "regular expression in the first 8 MiB")),
            ),
            CommandSpec(
                "getfilehash", "Hash a file (streamed)",
                fs.GetFileHashArgs, fs.GetFileHashResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",),
                options=(Option("--algo", "algo", "sha256, sha1, md5 or all"),),
            ),
            CommandSpec(
                "getfile", "Copy a file into the evidence store over the broker (sha256 checked)",
                acq.GetFileArgs, acq.GetFileResult, PERM_COLLECT, allowed_while_isolated=True,
                sends_file=True, time_limit_s=GETFILE_TIME_LIMIT_S, positionals=("path",),
            ),
            CommandSpec(
                "processes", "List processes",
                proc.ProcessesArgs, proc.ProcessesResult, PERM_READ, allowed_while_isolated=True,
                options=(Option("--pid", "pid", "only this process"),
                         Option("--tree", "tree", "show as a tree"),
                         Option("--open", "open_path", "only processes holding this file open")),
            ),
            CommandSpec(
                "netstat", "List network connections and listening sockets",
                net.NetstatArgs, net.NetstatResult, PERM_READ, allowed_while_isolated=True,
            ),
            CommandSpec(
                "persistence", "List autostart places: cron, systemd, rc, shell rc, keys, preload",
                pers.PersistenceArgs, pers.PersistenceResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
                options=(Option("--kind", "kind", "only items of this kind"),),
            ),
            CommandSpec(
                "services", "List services with their state (systemd, else unit files)",
                pers.ServicesArgs, pers.ServicesResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
            ),
            CommandSpec(
                "cat", "Show a file's bytes (capped, binary-safe, sha256 of what is shown)",
                ct.CatArgs, ct.CatResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",),
                options=(Option("--max-bytes", "max_bytes", "bytes to show (at most 1 MiB)"),),
            ),
            CommandSpec(
                "head", "Show a file's first lines (--lines N, default 10)",
                ct.HeadArgs, ct.HeadResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",),
                options=(Option("--lines", "lines", "lines to show"),),
            ),
            CommandSpec(
                "tail", "Show a file's last lines (--lines N, default 10)",
                ct.TailArgs, ct.TailResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",),
                options=(Option("--lines", "lines", "lines to show"),),
            ),
            CommandSpec(
                "strings", "List the printable runs of a file, with their offsets",
                ct.StringsArgs, ct.StringsResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",),
                options=(Option("--min", "min", "shortest run reported (default 4)"),),
            ),
            CommandSpec(
                "hexdump", "Show a range of a file's bytes as a hex dump",
                ct.HexdumpArgs, ct.HexdumpResult, PERM_READ, allowed_while_isolated=True,
                positionals=("path",),
                options=(Option("--offset", "offset", "first byte shown"),
                         Option("--length", "length", "bytes shown (at most 1 MiB)")),
            ),
            CommandSpec(
                "logs", "Read the journal, auth or system log, or the login records decoded",
                lg.LogsArgs, lg.LogsResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
                options=(Option("--source", "source",
                                "journal, auth, syslog, wtmp, btmp or lastlog"),
                         Option("--since", "since", "30m, 2h, 7d, a local time, or @EPOCH"),
                         Option("--grep", "grep", "only entries matching this regex"),
                         Option("--max", "max", "the newest this many entries")),
            ),
            CommandSpec(
                "users", "List accounts: password status (never the hash), groups, sudo, "
                "last login",
                acct.UsersArgs, acct.UsersResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
            ),
            CommandSpec(
                "sessions", "List the users logged in now (utmp)",
                acct.SessionsArgs, acct.SessionsResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
            ),
            CommandSpec(
                "kill", "End a process (never pid 1, the agent or its parent)",
                proc.KillArgs, proc.KillResult, PERM_REMEDIATE,
                destructive=True, allowed_while_isolated=True, positionals=("pid",),
                options=(Option("--tree", "tree", "its descendants too, deepest first"),),
            ),
            CommandSpec(
                "remediate", "Quarantine a file, link or tree into the agent's vault (undo QID)",
                rem.RemediateArgs, rem.RemediateResult, PERM_REMEDIATE,
                destructive=True, allowed_while_isolated=True,
                flag_permissions=(("force", PERM_ADMIN),), time_limit_s=REMEDIATE_TIME_LIMIT_S,
                positionals=("path",),
                options=(Option("--recursive", "recursive", "a whole directory tree"),
                         Option("--force", "force", "past the deny list (admin only)")),
            ),
            CommandSpec(
                "undo", "Restore a quarantined item exactly where it was",
                rem.UndoArgs, rem.UndoResult, PERM_REMEDIATE,
                destructive=True, allowed_while_isolated=True,
                time_limit_s=REMEDIATE_TIME_LIMIT_S, positionals=("qid",),
                options=(Option("--overwrite", "overwrite", "replace a file now at the path"),),
            ),
            CommandSpec(
                "put", "Write a library file to the endpoint (its sha256 checked first)",
                lib.PutArgs, lib.PutResult, PERM_EXECUTE,
                destructive=True, allowed_while_isolated=True,
                positionals=("name", "dest"), optional_positionals=frozenset({"dest"}),
                options=(Option("--overwrite", "overwrite", "replace an existing file"),),
            ),
            CommandSpec(
                "runscript", "Run a library script (sha256 checked first), time-limited",
                lib.RunScriptArgs, lib.RunScriptResult, PERM_EXECUTE,
                destructive=True, allowed_while_isolated=True,
                positionals=("name",), rest="args",
            ),
            CommandSpec(
                "modules", "List loaded kernel modules (/proc/modules, as lsmod)",
                sysinfo.ModulesArgs, sysinfo.ModulesResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
            ),
            CommandSpec(
                "mounts", "List mounted filesystems (/proc/self/mounts)",
                sysinfo.MountsArgs, sysinfo.MountsResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
            ),
            CommandSpec(
                "interfaces", "List network interfaces, their addresses, and the routes",
                sysinfo.InterfacesArgs, sysinfo.InterfacesResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
            ),
            CommandSpec(
                "env", "Show a process's environment (secret-looking values redacted)",
                traces.EnvArgs, traces.EnvResult, PERM_COLLECT,
                allowed_while_isolated=True, platforms=LINUX_ONLY, positionals=("pid",),
            ),
            CommandSpec(
                "history", "Shell histories of each account: path, owner, sha256, last lines",
                traces.HistoryArgs, traces.HistoryResult, PERM_READ,
                allowed_while_isolated=True, platforms=LINUX_ONLY,
                options=(Option("--user", "user", "only this account's histories"),
                         Option("--max", "max", "last lines of each file (default 50)")),
            ),
            CommandSpec(
                "memdump", "Dump a process's readable memory into the evidence store",
                mem.MemdumpArgs, mem.MemdumpResult, PERM_COLLECT,
                also_requires=(PERM_EXECUTE,), protects_agent=True, allowed_while_isolated=True,
                sends_file=True, time_limit_s=COLLECT_TIME_LIMIT_S, platforms=LINUX_ONLY,
                positionals=("pid",),
            ),
            CommandSpec(
                "collect", "Archive a directory or glob (tar) into the evidence store",
                col.CollectArgs, col.CollectResult, PERM_COLLECT, allowed_while_isolated=True,
                sends_file=True, time_limit_s=COLLECT_TIME_LIMIT_S, platforms=LINUX_ONLY,
                positionals=("path",),
                options=(Option("--max-bytes", "max_bytes",
                                "largest archive to keep (e.g. 50M); nothing kept past it"),),
            ),
            CommandSpec(
                "isolate", "Cut the device off the network but for the broker (nftables)",
                iso.IsolateArgs, iso.IsolateResult, PERM_ISOLATE,
                allowed_while_isolated=True, device_level=True, platforms=LINUX_ONLY,
                options=(Option("--mode", "mode", "full, or selective with --allow"),
                         Option("--allow", "allow", "IP, CIDR, IP:PORT, [IPv6]:PORT, ...")),
            ),
            CommandSpec(
                "release", "Remove the isolation: the device's network is as before",
                iso.ReleaseArgs, iso.ReleaseResult, PERM_ISOLATE,
                allowed_while_isolated=True, device_level=True, platforms=LINUX_ONLY,
            ),
        ]
    )


#: The registry both sides use.
REGISTRY = build_registry()
