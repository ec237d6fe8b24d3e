"""What the analyst reads for each command's result model, drawn from the record's JSON."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli.render import TRUNCATED_MARKER, render_record
from orchestrator.cli.table import format_time
from tasks.commands import accounts as acct
from tasks.commands import acquisition as acq
from tasks.commands import content as ct
from tasks.commands import filesystem as fs
from tasks.commands import isolation as iso
from tasks.commands import library as lib
from tasks.commands import logs as lg
from tasks.commands import network as net
from tasks.commands import persistence as pers
from tasks.commands import processes as proc
from tasks.commands import remediation as rem
from tasks.commands.base import CommandResult
from tasks.registry import REGISTRY
from tests.unit.system_samples import SYSTEM_SAMPLES

SHA = "ab" * 32
QID = "Q0123456789ab"
T = 1_700_000_000.0


def _show(command: str, result: CommandResult, truncated: bool = False) -> list[str]:
    record = {"command": command, "status": "completed", "truncated": truncated,
              "result": json.loads(result.model_dump_json())}
    return render_record(record).splitlines()


def _proc(pid: int, name: str, cmdline: list[str], depth: int = 0) -> proc.ProcessInfo:
    return proc.ProcessInfo(pid=pid, ppid=pid - 1, name=name, user="root", cmdline=cmdline,
                            exe=None, started_at=None, cpu_percent=None, rss_bytes=3 * 2**20,
                            open_files=None, connections=None, status="S", depth=depth)


#: One result per command and the lines it must show (the first ones, or all).
SAMPLES: dict[str, tuple[CommandResult, list[str]]] = {
    "dir": (fs.DirResult(path="/tmp", unreadable=2, entries=[fs.DirEntry(
        name="l", type="symlink", size_bytes=3, mode="lrwxrwxrwx", owner="root",
        group="wheel", mtime=T, link_target="/etc/x")]), [
        "/tmp:", "MODE        OWNER  GROUP  SIZE  MTIME                NAME",
        f"lrwxrwxrwx  root   wheel     3  {format_time(T)}  l -> /etc/x",
        "(2 entries could not be read)"]),
    "cd": (fs.CdResult(cwd="/var/log"), ["/var/log"]),
    "fileinfo": (fs.FileInfoResult(
        path="/x", type="file", size_bytes=5, mode="-rw-------", mode_octal="0600", owner="a",
        group="b", uid=1, gid=2, inode=3, links=1, atime=T, mtime=T, ctime=T, sha256=SHA), [
        "path      /x", "type      file", "size      5 bytes", "mode      -rw------- (0600)",
        "owner     a (uid 1)", "group     b (gid 2)", "inode     3", "links     1",
        f"accessed  {format_time(T)}", f"modified  {format_time(T)}",
        f"changed   {format_time(T)}", f"sha256    {SHA}"]),
    "findfile": (fs.FindFileResult(root="/", pattern="*.exe", truncated=True, matches=[
        fs.FoundFile(path="/a.exe", type="file", size_bytes=9, mtime=T)]), [
        "PATH    TYPE  SIZE", "/a.exe  file     9",
        "(stopped after 1 matches: raise --max to see more)"]),
    "getfilehash": (fs.GetFileHashResult(path="/x", size_bytes=1, sha256=SHA, md5="c" * 32), [
        f"sha256  {SHA}  /x", f"md5     {'c' * 32}  /x"]),
    "getfile": (acq.GetFileResult(
        path="/x", resolved_path="/y", size_bytes=10, mtime=T, sha256=SHA, chunks=1,
        chunk_bytes=1024, evidence_sha256=SHA, evidence_path="/ev/ab", stored_at=T), [
        "/x -> /y: 10 bytes in 1 chunks", f"sha256  {SHA}  (agent and arrival agree)",
        "stored  /ev/ab", f"copy it with: lr evidence get {SHA} --out FILE"]),
    "processes": (proc.ProcessesResult(vanished=3, processes=[
        _proc(1, "init", ["/sbin/init", " "]), _proc(2, "kworker", [], depth=1)]), [
        "PID  PPID  USER  NAME       RSS MiB  STARTED  CMDLINE",
        "  1     0  root  init           3.0  -        /sbin/init",
        "  2     1  root    kworker      3.0  -        [kworker]",
        "(3 processes ended while being listed)"]),
    "netstat": (net.NetstatResult(partial=True, connections=[net.Connection(
        proto="tcp6", local_address="::1", local_port=80, remote_address=None,
        remote_port=None, state="LISTEN", pid=7, process_name="nginx")]), [
        "PROTO  LOCAL     REMOTE  STATE   PID  PROCESS",
        "tcp6   [::1]:80  *       LISTEN    7  nginx",
        "(partial: the agent may not read the owners of some sockets)"]),
    "persistence": (pers.PersistenceResult(root="/", items=[]), ["no persistence items under /"]),
    "services": (pers.ServicesResult(source="unit-files", note="systemd is not running", services=[
        pers.ServiceInfo(name="a.service", load="enabled", active="unknown", sub="unknown")]), [
        "(systemd is not running)", "UNIT       LOAD     ACTIVE   SUB      DESCRIPTION",
        "a.service  enabled  unknown  unknown"]),
    "cat": (ct.CatResult(path="/x", size_bytes=9, offset=0, encoding="base64", data="YVx4/wpi",
                         returned_bytes=6, sha256=SHA, cut=True), [
        "a\\x\\xff", "b",
        f"-- bytes 0-6 of 9 (6 returned, sha256 {SHA}) (cut: raise --max-bytes)"]),
    "head": (ct.HeadResult(path="/x", size_bytes=4, offset=0, encoding="utf-8", data="a\tb\x1b\n",
                           returned_bytes=4, sha256=SHA, file_sha256=SHA, lines=1), [
        "a\tb\\x1b", f"-- bytes 0-4 of 4 (4 returned, sha256 {SHA}; file sha256 {SHA})"]),
    "tail": (ct.TailResult(path="/x", size_bytes=9, offset=7, encoding="utf-8", data="z\n",
                           returned_bytes=2, sha256=SHA, lines=1), [
        "z", f"-- bytes 7-9 of 9 (2 returned, sha256 {SHA})"]),
    "strings": (ct.StringsResult(path="/x", size_bytes=99, min=4, scanned_bytes=99, sha256=SHA,
                                 strings=[ct.FoundString(offset=12, text="hello")]), [
        "     12 hello", f"-- 1 strings of at least 4 characters in 99 of 99 bytes, sha256 {SHA}"]),
    "hexdump": (ct.HexdumpResult(path="/x", size_bytes=99, offset=16, encoding="utf-8",
                                 data="ELF\x00abc", returned_bytes=7, sha256=SHA), [
        "00000010  45 4c 46 00 61 62 63                              |ELF.abc|", "00000017",
        f"-- bytes 16-23 of 99 (7 returned, sha256 {SHA})"]),
    "logs": (lg.LogsResult(source="auth", paths=["/var/log/auth.log"], matched=5, entries=[
        lg.LogEntry(time=T, host="web1", program="sshd", pid=42, message="Accepted \x1b")]), [
        "(auth: /var/log/auth.log)", f"{format_time(T)} web1 sshd[42]: Accepted \\x1b",
        "(the newest 1 of 5 matching entries: raise --max)"]),
    "users": (acct.UsersResult(unreadable=["/etc/shadow"], users=[acct.UserAccount(
        name="eve", uid=1001, gid=1001, home="/home/eve", shell="/bin/bash", password="unknown",
        groups=["eve", "sudo"], sudo=True, sudo_via=["group sudo"])]), [
        "USER   UID   GID  SHELL      PASSWORD  SUDO  LAST LOGIN  GROUPS",
        "eve   1001  1001  /bin/bash  unknown   yes   -           eve,sudo",
        "sudo: eve via group sudo", "(could not read: /etc/shadow)"]),
    "sessions": (acct.SessionsResult(path="/run/utmp", sessions=[acct.LoginSession(
        user="eve", line="pts/0", host="10.1.2.3", login_time=T, pid=77, alive=True)]), [
        "USER  LINE   HOST      LOGIN                PID  ALIVE",
        f"eve   pts/0  10.1.2.3  {format_time(T)}   77  yes"]),
    "kill": (proc.KillResult(pid=5, name="x", signal="SIGKILL", ended=False, killed=[
        proc.KilledProcess(pid=6, name="c", signal="none", ended=True, depth=1),
        proc.KilledProcess(pid=5, name="x", signal="SIGKILL", ended=False)]), [
        "  pid 6 (c) had already ended", "pid 5 (x) sent SIGKILL but has not ended yet"]),
    "remediate": (rem.RemediateResult(qid=QID, path="/d", type="dir", size_bytes=5, sha256=SHA,
                                      files=3, method="copy", forced=True), [
        f"quarantined tree of 3 entries /d as {QID} (5 bytes, copy)", f"sha256  {SHA}",
        "(forced past the deny list)", f"undo with: undo {QID}"]),
    "undo": (rem.UndoResult(qid=QID, path="/f", type="file", sha256=SHA, files=1, restored=True,
                            owner_restored=False), [
        f"restored {QID} to /f (1 entries, sha256 verified)",
        "(owner not restored: the agent does not run as root)"]),
    "put": (lib.PutResult(name="a.sh", path="/tmp/a.sh", size_bytes=3, sha256=SHA,
                          overwritten=True), [
        f"replaced /tmp/a.sh from library file a.sh (3 bytes, sha256 {SHA} verified)"]),
    "runscript": (lib.RunScriptResult(
        name="a.sh", sha256=SHA, interpreter=["/bin/sh"], args=[], exit_code=0, timed_out=False,
        timeout_s=30.0, duration_s=0.123, stdout="a\tb\x1b\n", stderr="oops\n", stdout_bytes=5,
        stderr_bytes=5, stdout_truncated=False, stderr_truncated=False), [
        "a\tb\\x1b", "--- stderr ---", "oops", "a.sh: exit code 0 (0.1 s)"]),
    "isolate": (iso.IsolateResult(mode="selective", table="inet liveresponse_isolation",
                                  broker=["127.0.0.1:6379"], allowed=["10.0.0.1"]), [
        "isolated (selective): only loopback and the broker (127.0.0.1:6379) stay reachable",
        "also allowed: 10.0.0.1"]),
    "release": (iso.ReleaseResult(removed=False, table="inet liveresponse_isolation"), [
        "was not isolated: no table inet liveresponse_isolation to remove"]),
}
SAMPLES.update(SYSTEM_SAMPLES)


def test_every_command_has_a_rendering_sample() -> None:
    assert set(SAMPLES) == set(REGISTRY)


@pytest.mark.parametrize("command", list(SAMPLES))
def test_each_command_renders_its_result_model(command: str) -> None:
    result, expected = SAMPLES[command]
    assert isinstance(result, REGISTRY[command].result_model)
    assert _show(command, result) == expected


def test_a_truncated_result_ends_with_the_marker() -> None:
    assert _show("cd", fs.CdResult(cwd="/"), truncated=True) == ["/", TRUNCATED_MARKER]


def test_kill_without_a_list_of_processes_shows_the_named_one() -> None:
    ended = proc.KillResult(pid=5, name="x", signal="SIGTERM", ended=True)
    assert _show("kill", ended) == ["pid 5 (x) ended after SIGTERM"]


def test_a_script_stopped_at_its_time_limit_says_so() -> None:
    stopped = lib.RunScriptResult(
        name="a.sh", sha256=SHA, interpreter=["/bin/sh"], args=[], exit_code=None,
        timed_out=True, timeout_s=2.5, duration_s=2.5, stdout="", stderr="", stdout_bytes=0,
        stderr_bytes=0, stdout_truncated=False, stderr_truncated=False)
    assert _show("runscript", stopped) == [
        "a.sh: stopped after 2.5 s (its time limit), with every process it started"]
