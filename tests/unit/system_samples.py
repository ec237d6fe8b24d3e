"""Rendering samples of the system state and evidence commands (test_result_rendering.py runs
them with every other command's)."""

from __future__ import annotations

from orchestrator.cli.table import format_time
from tasks.commands import collect as col
from tasks.commands import memory as mem
from tasks.commands import system as sysinfo
from tasks.commands import user_traces as traces
from tasks.commands.base import CommandResult

SHA = "cd" * 32
T = 1_700_000_000.0

#: One result per command and the lines it must show.
SYSTEM_SAMPLES: dict[str, tuple[CommandResult, list[str]]] = {
    "modules": (sysinfo.ModulesResult(source="/proc/modules", modules=[
        sysinfo.KernelModule(name="nf_tables", size_bytes=376832, refcount=2,
                             users=["nft_chain_nat"], state="Live"),
        sysinfo.KernelModule(name="rootkit", size_bytes=16384, state="Live", taint="OE")]), [
        "MODULE       SIZE  USED  BY             STATE  TAINT",
        "nf_tables  376832     2  nft_chain_nat  Live   -",
        "rootkit     16384     -  -              Live   OE"]),
    "mounts": (sysinfo.MountsResult(source="/proc/self/mounts", mounts=[
        sysinfo.Mount(source="/dev/vda", target="/", fstype="ext4", options=["rw", "relatime"])]),
        ["TARGET  SOURCE    FSTYPE  OPTIONS", "/       /dev/vda  ext4    rw,relatime"]),
    "interfaces": (sysinfo.InterfacesResult(interfaces=[sysinfo.Interface(
        name="eth0", mac="02:00:00:00:00:01", mtu=1500, up=True, addresses=[
            sysinfo.InterfaceAddress(family="inet", address="192.0.2.2", prefixlen=24),
            sysinfo.InterfaceAddress(family="inet6", address="fd00::2", prefixlen=64)])],
        routes=[sysinfo.Route(family="inet", destination="default", gateway="192.0.2.1",
                              interface="eth0", metric=0)]), [
        "INTERFACE  STATE   MTU  MAC                ADDRESS",
        "eth0       up     1500  02:00:00:00:00:01  192.0.2.2/24",
        "                                           fd00::2/64", "",
        "DESTINATION  GATEWAY    INTERFACE  METRIC", "default      192.0.2.1  eth0            0"]),
    "env": (traces.EnvResult(pid=7, name="app", variables=[
        traces.EnvVariable(name="HOME", value="/root"),
        traces.EnvVariable(name="API_TOKEN", value=traces.REDACTED, redacted=True)]), [
        "pid 7 (app): 2 variables", "HOME=/root", "API_TOKEN=<redacted>",
        "(1 values redacted: their names look like secrets', or they hold a password in a URL)"]),
    "history": (traces.HistoryResult(root="/", files=[
        traces.HistoryFile(user="alice", shell="bash", path="/home/alice/.bash_history",
                           owner="alice", size_bytes=8, mtime=T, sha256=SHA, total_lines=2,
                           lines=["id", "ls"]),
        traces.HistoryFile(user="root", shell="bash", path="/root/.bash_history", owner="root",
                           size_bytes=9, mtime=T, link_target="/dev/null")]), [
        f"/home/alice/.bash_history (bash, account alice, owner alice, 8 bytes, modified "
        f"{format_time(T)})", f"  sha256 {SHA}, 2 lines, the last 2:", "  id", "  ls",
        f"/root/.bash_history (bash, account root, owner root, 9 bytes, modified "
        f"{format_time(T)})", "  symlink -> /dev/null (not followed)"]),
    "memdump": (mem.MemdumpResult(
        pid=42, name="implant", size_bytes=8216, sha256=SHA, chunks=1, chunk_bytes=1 << 20,
        evidence_sha256=SHA, evidence_path="/ev/cd", stored_at=T,
        regions=[mem.MemoryRegion(start="0x1000", end="0x3000", perms="rw-p", path="[heap]",
                                  offset=0, size_bytes=8192)],
        skipped=[mem.MemoryRegion(start="0x9000", end="0xa000", perms="r--p", path="[vvar]",
                                  reason="Input/output error")]), [
        "pid 42 (implant): 1 regions, 8216 bytes in 1 chunks",
        f"sha256  {SHA}  (agent and arrival agree)", "stored  /ev/cd",
        "  skipped: 0x9000-0xa000 r--p [vvar]: Input/output error",
        f"copy it with: lr evidence get {SHA} --out FILE (layout: docs/evidence.md)"]),
    "collect": (col.CollectResult(
        path="/srv/app", roots=["/srv/app"], size_bytes=10240, sha256=SHA, chunks=1,
        chunk_bytes=1 << 20, evidence_sha256=SHA, evidence_path="/ev/cd", stored_at=T,
        members=[col.CollectMember(
            name="srv/app", path="/srv/app", type="dir", size_bytes=0, mode="drwxr-xr-x",
            mode_octal="0755", uid=0, gid=0, owner="root", group="root", atime=T, mtime=T,
            ctime=T)],
        skipped=[col.SkippedEntry(path="/srv/app/fifo", type="fifo",
                                  reason="special file: no content to archive")]), [
        "/srv/app: 0 files, 1 directories, 0 symlinks; archive of 10240 bytes in 1 chunks",
        f"sha256  {SHA}  (agent and arrival agree)", "stored  /ev/cd",
        "  skipped /srv/app/fifo (fifo): special file: no content to archive",
        f"copy it with: lr evidence get {SHA} --out FILE.tar (the manifest is its last member)"]),
}
