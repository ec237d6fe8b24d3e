"""`lr audit export|verify --file|trim` against a live API, as an admin and a responder use them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.main import main
from tasks import clock
from tests.stack import Stack

pytestmark = pytest.mark.integration

Lr = Callable[..., Result]


@pytest.fixture
def stack(stack_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """The API with no agent (the audit routes need none), stopped when the test ends."""
    with stack_factory([]) as st:
        yield st


@pytest.fixture
def lr(stack: Stack, tmp_path: Path) -> Lr:
    """Run `lr` against the stack as its admin (or `token=`), isolated from the user's env."""
    runner = CliRunner()
    env: dict[str, str | None] = {
        "LR_DATA_DIR": str(tmp_path / "lr-home"), "LR_API_URL": None, "LR_TOKEN": None,
        "LR_ORCHESTRATOR_PUBLIC_KEY_FILE": None,
    }

    def invoke(*args: str, token: str | None = None, extra_env: dict[str, str] | None = None
               ) -> Result:
        argv = ["--api-url", stack.url, "--token", token or stack.token, *args]
        return runner.invoke(main, argv, env={**env, **(extra_env or {})})

    return invoke


@pytest.fixture
def filled(stack: Stack) -> Stack:
    """Some audit entries, as requests leave them."""
    for i in range(5):
        stack.plane.audit.append("admin", "command.requested", "dev1", "allowed", n=i)
    return stack


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result


def test_export_then_verify_file_exits_0(lr: Lr, filled: Stack, tmp_path: Path) -> None:
    key = str(filled.signing.public_path)
    path = tmp_path / "audit.jsonl"
    out = ok(lr("audit", "export", "--jsonl", str(path))).stdout
    assert f"to {path}" in out
    header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert header["entries"] >= 5
    result = ok(lr("audit", "verify", "--file", str(path), "--public-key", key))
    assert result.stdout.startswith(f"audit chain ok: {header['entries']} entries")


def test_verify_file_of_an_edited_export_exits_12_naming_the_line(
    lr: Lr, filled: Stack, tmp_path: Path
) -> None:
    key = str(filled.signing.public_path)
    path = tmp_path / "audit.jsonl"
    ok(lr("audit", "export", "--jsonl", str(path)))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    entry = json.loads(lines[3])
    lines[3] = json.dumps({**entry, "actor": "mallory"}) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    result = lr("audit", "verify", "--file", str(path), "--public-key", key)
    assert result.exit_code == 12, result.output
    (line,) = result.stderr.splitlines()
    assert f"at line 4, entry {entry['id']}" in line and "hash does not match" in line
    as_json = lr("--json", "audit", "verify", "--file", str(path), "--public-key", key)
    assert as_json.exit_code == 12
    assert json.loads(as_json.stdout)["line"] == 4


def test_export_refuses_to_overwrite_without_force(lr: Lr, filled: Stack, tmp_path: Path) -> None:
    key = str(filled.signing.public_path)
    path = tmp_path / "audit.jsonl"
    path.write_text("keep me", encoding="utf-8")
    result = lr("audit", "export", "--jsonl", str(path))
    assert result.exit_code == 2, result.output
    assert "--force" in result.stderr
    assert path.read_text(encoding="utf-8") == "keep me"
    ok(lr("audit", "export", "--jsonl", str(path), "--force"))
    ok(lr("audit", "verify", "--file", str(path), "--public-key", key))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_export_to_stdout_is_the_file_format(lr: Lr, filled: Stack, tmp_path: Path) -> None:
    key = str(filled.signing.public_path)
    result = ok(lr("audit", "export", "--jsonl", "-"))
    path = tmp_path / "piped.jsonl"
    path.write_text(result.stdout, encoding="utf-8")
    assert json.loads(result.stdout.splitlines()[0])["type"] == "header"
    assert "exported" in result.stderr
    ok(lr("audit", "verify", "--file", str(path), "--public-key", key))


def test_an_export_is_audited(lr: Lr, filled: Stack, tmp_path: Path) -> None:
    ok(lr("audit", "export", "--jsonl", str(tmp_path / "a.jsonl")))
    (entry,) = filled.plane.audit.read(actor="admin", limit=1)
    assert entry.action == "audit.exported" and entry.details["entries"] >= 5


def test_trim_keeps_the_chain_verifiable_online_and_offline(
    lr: Lr, filled: Stack, tmp_path: Path
) -> None:
    length = filled.plane.client.xlen(filled.plane.keys.audit)
    out = ok(lr("--json", "audit", "trim", "--before", str(clock.now() + 60)))
    result = json.loads(out.stdout)
    assert result["removed"] == length - 1  # the newest entry is always kept
    assert result["checkpoint"]["key_id"] == filled.signing.key_id
    actions = [e["action"] for e in json.loads(ok(lr("--json", "audit", "show")).stdout)]
    assert actions[-1] == "audit.trimmed"
    assert "older ones trimmed" in ok(lr("audit", "verify")).stdout

    path = tmp_path / "trimmed.jsonl"
    ok(lr("audit", "export", "--jsonl", str(path)))
    key = str(filled.signing.public_path)
    ok(lr("audit", "verify", "--file", str(path), "--public-key", key))
    ok(lr("audit", "verify", "--file", str(path),
          extra_env={"LR_ORCHESTRATOR_PUBLIC_KEY_FILE": key}))
    no_key = lr("audit", "verify", "--file", str(path))
    assert no_key.exit_code == 2, no_key.output
    assert "--public-key" in no_key.stderr


def test_trim_that_removes_nothing_says_so(lr: Lr, filled: Stack) -> None:
    length = filled.plane.client.xlen(filled.plane.keys.audit)
    out = ok(lr("audit", "trim", "--before", "2001-01-01T00:00")).stdout
    assert out.startswith("nothing to trim")
    assert filled.plane.client.xlen(filled.plane.keys.audit) == length
    assert filled.plane.client.get(filled.plane.keys.audit_checkpoint) is None


def test_trim_by_a_non_admin_is_denied_and_audited(lr: Lr, filled: Stack) -> None:
    token = filled.user("rita", ["responder"])
    length = filled.plane.client.xlen(filled.plane.keys.audit)
    result = lr("audit", "trim", "--before", str(clock.now() + 60), token=token)
    assert result.exit_code == 4, result.output
    with filled.client(token) as http:
        assert http.post("/audit/trim", json={"before": clock.now()}).status_code == 403
    denials = filled.plane.audit.read(actor="rita")
    assert [(e.action, e.target) for e in denials] == [("access.denied", "/audit/trim")] * 2
    assert filled.plane.client.get(filled.plane.keys.audit_checkpoint) is None
    assert filled.plane.client.xlen(filled.plane.keys.audit) == length + 2


def test_trim_before_must_be_a_time(lr: Lr, filled: Stack) -> None:
    result = lr("audit", "trim", "--before", "yesterday-ish")
    assert result.exit_code == 2 and "ISO 8601" in result.output
    with filled.client() as http:
        resp = http.post("/audit/trim", json={"before": "soon"})
    assert resp.status_code == 400 and "before" in resp.json()["error"]["message"]


def test_public_key_without_file_is_a_usage_error(lr: Lr, filled: Stack) -> None:
    result = lr("audit", "verify", "--public-key", str(filled.signing.public_path))
    assert result.exit_code == 2 and "--file" in result.stderr


def test_a_long_export_reports_progress_on_stderr(
    lr: Lr, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = str(stack.signing.public_path)
    monkeypatch.setattr("orchestrator.cli.audit.PROGRESS_EVERY_S", 0.0)
    for i in range(2500):  # more than one server-side batch
        stack.plane.audit.append("admin", "command.requested", "dev1", "allowed", n=i)
    path = tmp_path / "big.jsonl"
    result = ok(lr("audit", "export", "--jsonl", str(path)))
    assert "exported 2500 of 2500 entries…" in result.stderr
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2501
    ok(lr("audit", "verify", "--file", str(path), "--public-key", key))


def test_trim_of_a_tampered_stream_exits_12_and_removes_nothing(lr: Lr, filled: Stack) -> None:
    client, keys = filled.plane.client, filled.plane.keys
    ids = [e.id for e in filled.plane.audit.read()]
    client.xdel(keys.audit, ids[1])
    result = lr("audit", "trim", "--before", str(clock.now() + 60))
    assert result.exit_code == 12, result.output
    assert "refusing to trim" in result.stderr and "prev mismatch" in result.stderr
    assert [e.id for e in filled.plane.audit.read()][: len(ids) - 1] == [ids[0], *ids[2:]]
    assert client.get(keys.audit_checkpoint) is None
    (refusal,) = filled.plane.audit.read(actor="admin", limit=1)
    assert (refusal.action, refusal.decision) == ("audit.trim.denied", "denied")


def serve_export_as(monkeypatch: pytest.MonkeyPatch,
                    reshape: Callable[[str], Iterator[str]]) -> None:
    """The API sends its export reshaped by `reshape` (given the whole text)."""
    from orchestrator.api import audit as routes

    real = routes.export_lines
    monkeypatch.setattr(routes, "export_lines",
                        lambda log, snap: reshape("".join(real(log, snap))))


def test_an_export_arriving_in_pieces_cut_anywhere_is_written_whole(
    lr: Lr, filled: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    def pieces(text: str) -> Iterator[str]:
        sent.append(text)
        return (text[i:i + 7] for i in range(0, len(text), 7))  # the header split too

    serve_export_as(monkeypatch, pieces)
    path = tmp_path / "pieces.jsonl"
    out = ok(lr("audit", "export", "--jsonl", str(path))).stdout
    assert "exported 5 audit entries" in out
    assert path.read_text(encoding="utf-8") == sent[0]
    ok(lr("audit", "verify", "--file", str(path), "--public-key",
          str(filled.signing.public_path)))


def test_an_export_cut_off_mid_line_fails_and_leaves_no_file(
    lr: Lr, filled: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_export_as(monkeypatch, lambda text: iter([text[:-40]]))
    path = tmp_path / "cut.jsonl"
    result = lr("audit", "export", "--jsonl", str(path))
    assert result.exit_code != 0
    assert "the export stopped after 4 of the 5 entries it announced" in result.stderr
    assert not path.exists() and list(tmp_path.glob(".cut.jsonl.*")) == []
