"""`runscript`: fetch a library script, verify its sha256, run it with its interpreter.

The script is written to a private temporary directory (0700) and checked against the signed
sha256 and size before anything runs; the interpreter is chosen by extension; the script gets
its arguments as a list (never through a shell), a minimal environment (never the agent's
LR_* settings), the session's cwd and a time limit. The directory is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tasks.commands.library import RunScriptArgs, RunScriptResult
from tasks.errors import (
    CommandFailedError,
    EndpointPermissionError,
    NotADirectoryError_,
    PathNotFoundError,
    UnsupportedOnEndpointError,
)
from worker_agent.context import CommandContext
from worker_agent.library_files import fetch_verified, signed_blob
from worker_agent.script_runner import Captured, run_bounded

#: Extensions runscript runs, and what runs them.
SCRIPT_TYPES = {".sh": "sh", ".bash": "bash", ".py": "python", ".ps1": "PowerShell"}
#: Seconds the script's limit stays below the command's own (fetch, clean-up, answer).
LIMIT_MARGIN_S = 5.0
#: Result bytes kept for everything but the two outputs (names, interpreter, args, ...).
RESULT_OVERHEAD_BYTES = 16 * 1024
#: Environment variables a script inherits from the agent; everything else is dropped.
ENV_KEEP = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
            "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "TEMP", "TMP")
#: PATH when the agent has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_runscript(args: RunScriptArgs, ctx: CommandContext) -> RunScriptResult:
    """Run a library script; its output, exit code, and whether it was stopped at its limit."""
    sha256, _ = signed_blob(args)
    kind = script_kind(args.name)
    cwd = _session_dir(ctx)
    timeout_s = script_timeout_s(ctx)
    keep = max((ctx.output_max_bytes - RESULT_OVERHEAD_BYTES) // 2, 1024)
    workdir = Path(tempfile.mkdtemp(prefix="lr-script-"))  # 0700: ours alone
    try:
        script = workdir / args.name
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            fetch_verified(args, ctx, fd)
        finally:
            os.close(fd)
        interpreter = choose_interpreter(kind, script)
        try:
            outcome = run_bounded([*interpreter, str(script), *args.args], cwd=cwd,
                                  env=script_env(os.environ), timeout_s=timeout_s,
                                  keep_bytes=keep)
        except OSError as exc:
            raise CommandFailedError(
                f"cannot start {interpreter[0]} for {args.name}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stdout, stdout_cut = _text(outcome.stdout, keep)
    stderr, stderr_cut = _text(outcome.stderr, keep)
    return RunScriptResult(
        name=args.name, sha256=sha256, interpreter=interpreter, args=list(args.args),
        exit_code=outcome.exit_code, timed_out=outcome.timed_out, timeout_s=timeout_s,
        duration_s=outcome.duration_s, stdout=stdout, stderr=stderr,
        stdout_bytes=outcome.stdout.total_bytes, stderr_bytes=outcome.stderr.total_bytes,
        stdout_truncated=stdout_cut, stderr_truncated=stderr_cut,
    )


def script_kind(name: str) -> str:
    """The interpreter family a script's extension asks for; refused before any byte moves."""
    kind = SCRIPT_TYPES.get(Path(name).suffix.lower())
    if kind is None:
        raise UnsupportedOnEndpointError(
            f"{name}: runscript runs {', '.join(SCRIPT_TYPES)} scripts; no interpreter for "
            f"{Path(name).suffix or 'a name without an extension'}",
            hint="add the script to the library under a name with one of those extensions")
    return kind


def choose_interpreter(kind: str, script: Path) -> list[str]:
    """The argv before the script's path: bash when the script's shebang asks for it."""
    if kind == "python":
        python = sys.executable or shutil.which("python3")
        if not python:
            raise UnsupportedOnEndpointError("no Python interpreter on this endpoint")
        return [python]
    if kind == "PowerShell":
        shell = shutil.which("pwsh") or shutil.which("powershell")
        if not shell:
            raise UnsupportedOnEndpointError("no PowerShell on this endpoint",
                                             hint="install pwsh, or use a .sh or .py script")
        return [shell, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
    if kind == "bash" or _shebang(script).find("bash") >= 0:
        bash = shutil.which("bash")
        if not bash:
            raise UnsupportedOnEndpointError(f"{script.name} asks for bash; no bash on this "
                                             "endpoint")
        return [bash]
    sh = "/bin/sh" if os.path.exists("/bin/sh") else shutil.which("sh")
    if not sh:
        raise UnsupportedOnEndpointError("no POSIX shell on this endpoint")
    return [sh]


def script_timeout_s(ctx: CommandContext) -> float:
    """The configured script limit, kept below the command's own soft time limit."""
    settings = ctx.settings
    return max(min(settings.runscript_timeout_s,
                   settings.command_time_limit_s - LIMIT_MARGIN_S), 1.0)


def script_env(agent_env: Mapping[str, str]) -> dict[str, str]:
    """The few variables a script needs; the broker URL and other LR_* settings stay behind."""
    env = {k: v for k, v in agent_env.items() if k in ENV_KEEP or k.startswith("LC_")}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _session_dir(ctx: CommandContext) -> Path:
    cwd = ctx.resolve(".")
    if not cwd.exists():
        raise PathNotFoundError(f"the session's directory {cwd} does not exist any more",
                                hint="cd to another directory first")
    if not cwd.is_dir():
        raise NotADirectoryError_(f"the session's directory {cwd} is not a directory")
    if not os.access(cwd, os.X_OK):
        raise EndpointPermissionError(f"the agent may not enter {cwd}")
    return cwd


def _shebang(script: Path) -> str:
    with open(script, "rb") as f:
        first = f.readline(256)
    return first.decode("utf-8", "replace") if first.startswith(b"#!") else ""


def _text(stream: Captured, keep_bytes: int) -> tuple[str, bool]:
    """The kept bytes as text with a marker when cut, never over `keep_bytes` as JSON."""
    text = stream.kept.decode("utf-8", "replace")
    cut = stream.truncated
    # Control bytes grow when escaped in JSON: shorten until the escaped form fits too.
    while len(json.dumps(text)) > keep_bytes:
        text = text[: len(text) * 3 // 4]
        cut = True
    if cut:
        text += (f"\n[output truncated: {stream.total_bytes} bytes written, "
                 f"{len(text.encode())} kept]")
    return text, cut
