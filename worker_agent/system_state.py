"""Handlers of `modules` and `mounts`: the kernel's own lists, read from /proc and parsed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tasks.commands.system import (
    KernelModule,
    ModulesArgs,
    ModulesResult,
    Mount,
    MountsArgs,
    MountsResult,
)
from tasks.errors import UnsupportedOnEndpointError
from worker_agent.context import CommandContext
from worker_agent.filesystem import oserrors_mapped

#: Where the kernel lists its loaded modules and the agent's mounts.
PROC_MODULES = Path("/proc/modules")
PROC_MOUNTS = Path("/proc/self/mounts")

#: The octal escapes the kernel writes for blanks and backslashes in mount fields (`\040`).
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def run_modules(args: ModulesArgs, ctx: CommandContext) -> ModulesResult:
    """Every loaded kernel module, as /proc/modules lists it (what `lsmod` shows)."""
    require_linux("modules")
    if not PROC_MODULES.exists():
        raise UnsupportedOnEndpointError(
            f"{PROC_MODULES} does not exist: this kernel was built without loadable modules "
            "(or hides them from this namespace)",
            hint="nothing can be loaded into it; look at persistence and processes instead")
    with oserrors_mapped(PROC_MODULES):
        text = PROC_MODULES.read_text(errors="replace")
    return ModulesResult(source=str(PROC_MODULES), modules=parse_modules(text))


def parse_modules(text: str) -> list[KernelModule]:
    """The lines of /proc/modules: `name size refcount users state address [taint]`."""
    modules = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        name, size, refcount, users, state = fields[:5]
        taint = fields[6].strip("()") if len(fields) > 6 else ""
        modules.append(KernelModule(
            name=name, size_bytes=int(size),
            refcount=int(refcount) if refcount.isdigit() else None,
            users=[u for u in users.split(",") if u and u != "-"], state=state, taint=taint))
    return modules


def run_mounts(args: MountsArgs, ctx: CommandContext) -> MountsResult:
    """Every mount of the agent's mount namespace, as /proc/self/mounts lists it."""
    require_linux("mounts")
    with oserrors_mapped(PROC_MOUNTS):
        text = PROC_MOUNTS.read_text(errors="replace")
    return MountsResult(source=str(PROC_MOUNTS), mounts=parse_mounts(text))


def parse_mounts(text: str) -> list[Mount]:
    """The lines of a mounts file: `source target fstype options dump pass`."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        source, target, fstype, options = (unescape(f) for f in fields[:4])
        mounts.append(Mount(source=source, target=target, fstype=fstype,
                            options=options.split(",")))
    return mounts


def unescape(field: str) -> str:
    """A mount field with the kernel's octal escapes (`\\040` for a blank) decoded."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def require_linux(command: str) -> None:
    """UnsupportedOnEndpointError on anything but Linux (these commands read /proc)."""
    if sys.platform != "linux":
        raise UnsupportedOnEndpointError(f"{command} is not supported on {sys.platform}",
                                         hint="it reads Linux's /proc")
