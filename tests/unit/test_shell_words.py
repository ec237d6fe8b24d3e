"""The shell's words, hint forms and path completion, as pure functions."""

from __future__ import annotations

import pytest

from orchestrator.cli.job_forms import JobForms
from orchestrator.cli.shell_input import Completer, RemotePaths
from orchestrator.cli.shell_words import (
    ALIAS_FALLBACKS,
    ALIASES,
    completion_words,
    expand_alias,
    render_help,
    shell_word,
)
from orchestrator.commands.verdicts import script_verdict
from tasks.commands.filesystem import DirEntry
from tasks.commands.library import RunScriptResult
from tasks.errors import UsageError
from tasks.registry import REGISTRY


def test_hints_are_rewritten_to_the_shells_forms_only_inside_it() -> None:
    hint = "list them with `lr jobs S0000000a`; see `lr fg S0000000a 3`, `lr cancel S0000000a 3`"
    assert JobForms("S0000000a", in_shell=True).rewrite(hint) == (
        "list them with `jobs`; see `fg 3`, `cancel 3`")
    assert JobForms("S0000000a").rewrite(hint) == hint
    other = "`lr fg S0000000b 3`"  # another session's job: only the CLI form works for it
    assert JobForms("S0000000a", in_shell=True).rewrite(other) == other


def test_aliases_expand_to_the_registrys_commands() -> None:
    assert expand_alias("ls /tmp") == "dir /tmp"
    assert expand_alias("ps --pid 4") == "processes --pid 4"
    assert expand_alias("connections") == "netstat"
    assert expand_alias("dir /tmp") == "dir /tmp"
    assert shell_word("clear") == "cls" and shell_word("quit") == "exit"
    assert shell_word("dir") is None


def test_an_alias_whose_command_is_missing_says_what_to_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ALIASES, "type", "no-such-command")
    monkeypatch.setitem(ALIAS_FALLBACKS, "type", "use getfile")
    with pytest.raises(UsageError, match="no no-such-command command") as raised:
        expand_alias("type C:\\boot.ini")
    assert raised.value.hint == "use getfile"
    assert "type" not in completion_words()


def test_help_of_an_alias_is_its_commands_and_an_unknown_name_is_refused() -> None:
    assert render_help("ls").startswith(f"usage: {REGISTRY['dir'].usage}")
    assert render_help("fg").startswith("usage: fg N")
    with pytest.raises(UsageError, match="no command 'nope'"):
        render_help("nope")


def _entry(name: str, kind: str) -> DirEntry:
    return DirEntry(name=name, type=kind, size_bytes=0, mode="", owner="", group="",  # type: ignore[arg-type]
                    mtime=0.0)


def test_paths_complete_from_one_listing_per_directory() -> None:
    asked: list[str] = []

    def list_dir(path: str) -> list[DirEntry]:
        asked.append(path)
        return [_entry("etc", "dir"), _entry("evil file", "file"), _entry("env.txt", "file"),
                _entry(".hidden", "file")]

    paths = RemotePaths(list_dir)
    assert paths.matches("/e", "/root") == ["/env.txt ", "/etc/"]
    assert paths.matches("/et", "/tmp") == ["/etc/"]  # absolute: one listing whatever the cwd
    assert paths.matches("e", "/root") == ["env.txt ", "etc/"]
    assert paths.matches("", "/root") == ["env.txt ", "etc/"]  # hidden ones need a prefix
    assert paths.matches(".", "/root") == [".hidden "]
    assert asked == ["/", "."]
    completer = Completer(paths, lambda: "/root")
    assert "getfilehash " in completer.candidates([], "getf")
    assert completer.candidates(["fg"], "") == []
    assert completer.candidates(["dir"], "/et") == ["/etc/"]


def test_a_failed_listing_completes_nothing() -> None:
    def broken(path: str) -> list[DirEntry]:
        raise UsageError("device offline")

    assert RemotePaths(broken).matches("/e", "/") == []


def _script(exit_code: int | None, timed_out: bool) -> RunScriptResult:
    return RunScriptResult(name="s.sh", sha256="0" * 64, interpreter=["/bin/sh"], args=[],
                           exit_code=exit_code, timed_out=timed_out, timeout_s=30,
                           duration_s=1, stdout="", stderr="", stdout_bytes=0,
                           stderr_bytes=0, stdout_truncated=False, stderr_truncated=False)


def test_a_script_failed_when_it_exited_non_zero_or_overran() -> None:
    assert script_verdict(_script(0, False)) is None
    failed = script_verdict(_script(3, False))
    assert failed is not None and failed.exit_code == 18 and "code 3" in failed.message
    stopped = script_verdict(_script(None, True))
    assert stopped is not None and "stopped after 30 s" in stopped.message
