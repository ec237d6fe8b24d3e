"""The line contract of put and runscript: library names, words after `--`, the usage."""

from __future__ import annotations

import pytest

from orchestrator.files.library import shipped_file
from tasks.commands.library import PutArgs, RunScriptArgs, RunScriptResult
from tasks.errors import LibraryItemNotFoundError, UsageError
from tasks.parsing import parse_line
from tasks.registry import REGISTRY, CommandSpec, Registry


def test_words_after_double_dash_are_the_scripts_arguments_verbatim() -> None:
    spec, args = parse_line("runscript check.sh -- -v --since '2 days' -- x")
    assert spec.name == "runscript"
    assert isinstance(args, RunScriptArgs)
    assert args.name == "check.sh"
    assert args.args == ("-v", "--since", "2 days", "--", "x")


def test_runscript_without_arguments_has_none() -> None:
    _, args = parse_line("runscript check.sh")
    assert isinstance(args, RunScriptArgs) and args.args == ()
    _, empty = parse_line("runscript check.sh --")
    assert isinstance(empty, RunScriptArgs) and empty.args == ()


def test_a_script_argument_without_double_dash_is_refused_with_the_usage() -> None:
    with pytest.raises(UsageError) as info:
        parse_line("runscript check.sh -v")
    assert "unexpected argument(s): '-v' (put ARGS after --)" in info.value.message
    assert info.value.hint == "usage: runscript NAME [-- ARGS...]"


def test_put_takes_name_optional_dest_and_overwrite() -> None:
    _, args = parse_line("put tool.sh /tmp/x --overwrite")
    assert args == PutArgs(name="tool.sh", dest="/tmp/x", overwrite=True)
    _, bare = parse_line("put tool.sh")
    assert bare == PutArgs(name="tool.sh")
    assert REGISTRY["put"].usage == "put NAME [DEST] [--overwrite]"


def test_the_line_cannot_set_the_signed_sha256_or_size() -> None:
    with pytest.raises(UsageError, match="unknown option '--sha256'"):
        parse_line("put tool.sh --sha256 " + "0" * 64)
    with pytest.raises(UsageError, match="unknown option '--size_bytes'"):
        parse_line("runscript tool.sh --size_bytes 3")


@pytest.mark.parametrize("name", ["../x.sh", "a/b.sh", ".hidden", "-rf", "", "x" * 129,
                                  "sp ace.sh", "é.sh"])
def test_library_names_are_plain_file_names(name: str) -> None:
    with pytest.raises(UsageError, match="not a library name"):
        parse_line(f"put '{name}'")


def test_the_double_dash_field_must_have_a_default() -> None:
    bad = CommandSpec("runscript", "x", RunScriptArgs, RunScriptResult, "live.execute",
                      rest="name")
    with pytest.raises(ValueError, match="needs a default"):
        Registry([bad])


def test_the_double_dash_field_must_exist() -> None:
    bad = CommandSpec("runscript", "x", RunScriptArgs, RunScriptResult, "live.execute",
                      positionals=("name",), rest="argv")
    with pytest.raises(ValueError, match="unknown fields"):
        Registry([bad])


def test_the_shipped_persistence_check_is_found_and_a_missing_one_named() -> None:
    path = shipped_file("persistence_check.sh")
    assert path.read_bytes().startswith(b"#!/bin/sh\n")
    with pytest.raises(LibraryItemNotFoundError, match="no shipped library file 'nope.sh'"):
        shipped_file("nope.sh")
