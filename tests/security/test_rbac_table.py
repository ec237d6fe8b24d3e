"""Every role × every command × every scope, through the declared pipelines on real Redis.

The expectation is worked out here from the policy's role permissions and the grant's scope
alone (not by the code under test): a command passes when the role holds every permission it
needs (its own and its flags'), the grant is unscoped or the device carries the scope, and a
global permission (admin) comes only from an unscoped grant. Reads follow the same rule with
`view`. The pipeline runs for real up to its action, which is replaced by a marker: nothing is
sent to any agent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings
from orchestrator.api.guard import at_session
from orchestrator.files.library import library_of
from orchestrator.plane import ControlPlane
from orchestrator.policies import checks
from orchestrator.policies.model import GLOBAL_PERMISSIONS, PERM_VIEW, Grant
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import create_user
from tasks.errors import PermissionDeniedError
from tasks.parsing import parse_line
from tasks.registry import REGISTRY
from tasks.signing import KeyPair
from worker_agent.registration import register_device

LIB = "table-probe.sh"

#: A valid line per command (and per flag that needs more); a new command must add one.
LINES = {
    "dir": ["dir /tmp"], "cd": ["cd /tmp"], "fileinfo": ["fileinfo /etc/hostname"],
    "findfile": ["findfile hosts --path /etc"], "getfilehash": ["getfilehash /etc/hostname"],
    "getfile": ["getfile /etc/hostname"], "processes": ["processes"], "netstat": ["netstat"],
    "persistence": ["persistence"], "services": ["services"],
    "cat": ["cat /etc/hostname"], "head": ["head /etc/hostname"], "tail": ["tail /etc/hostname"],
    "strings": ["strings /etc/hostname"], "hexdump": ["hexdump /etc/hostname"],
    "logs": ["logs --source auth"], "users": ["users"], "sessions": ["sessions"],
    "kill": ["kill 4194000"],
    "remediate": ["remediate /tmp/x", "remediate /tmp/x --force"],
    "undo": ["undo Q0123456789ab"], "put": [f"put {LIB}"], "runscript": [f"runscript {LIB}"],
    "isolate": ["isolate"], "release": ["release"],
}
LINES.update({
    "modules": ["modules"], "mounts": ["mounts"], "interfaces": ["interfaces"],
    "env": ["env 4194000"], "history": ["history --user root"], "memdump": ["memdump 4194000"],
    "collect": ["collect /etc/hostname"],
})
IN_SCOPE, OUT_OF_SCOPE = "group:web", "group:finance"
#: (grant scope, device tag) pairs: unscoped, scoped and matching, scoped elsewhere.
SCOPES = [(None, OUT_OF_SCOPE), (IN_SCOPE, IN_SCOPE), (IN_SCOPE, OUT_OF_SCOPE)]


@pytest.fixture(scope="module")
def plane(redis_url: str, signing_keys: KeyPair,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    import uuid

    from orchestrator.local.cleanup import delete_matching

    prefix = f"lrtest-{uuid.uuid4().hex[:10]}"
    cfg = Settings(redis_url=redis_url, key_prefix=prefix,
                   data_dir=tmp_path_factory.mktemp("table"),
                   signing_key_file=signing_keys.private_path)
    p = ControlPlane.from_settings(cfg)
    library_of(p).add(LIB, b"#!/bin/sh\necho probe\n", "admin")
    for tag in (IN_SCOPE, OUT_OF_SCOPE):
        device = f"table-{tag.split(':')[1]}"
        register_device(p.client, p.keys, device)
        p.devices.set_tags(device, [tag])
    try:
        yield p
    finally:
        delete_matching(p.client, f"{prefix}:*")
        p.close()


def expected(role_perms: frozenset[str], needed: list[str], scope: str | None,
             tag: str) -> bool:
    in_scope = scope is None or scope == tag
    return all(perm in role_perms and in_scope and not (perm in GLOBAL_PERMISSIONS and scope)
               for perm in needed)


def _user(plane: ControlPlane, role: str, scope: str | None):  # type: ignore[no-untyped-def]
    import uuid

    return create_user(plane.client, plane.keys, f"u{uuid.uuid4().hex[:8]}",
                       grants=[Grant(role=role, scope=scope)])


def test_the_table_covers_every_command() -> None:
    assert sorted(LINES) == sorted(REGISTRY)


@pytest.mark.parametrize("role", ["viewer", "responder", "advanced", "admin"])
def test_commands_follow_role_and_scope(plane: ControlPlane, role: str) -> None:
    policy = plane.policies.policy
    perms = policy.role_permissions(role)
    outcomes: list[tuple[str, str | None, str, bool, bool]] = []
    for (scope, tag), line in itertools.product(SCOPES, itertools.chain(*LINES.values())):
        user = _user(plane, role, scope)
        device = f"table-{tag.split(':')[1]}"
        spec, args = parse_line(line)
        want = expected(perms, spec.permissions_for(args), scope, tag)
        if spec.device_level:
            req = Request(plane, target=device, user=user, device_id=device, line=line)
            pipeline = checks.DEVICE_COMMAND
        else:
            session = plane.sessions.open(user.name, device)
            req = Request(plane, target=session.id, user=user, session_id=session.id,
                          line=line)
            pipeline = checks.COMMAND
        try:
            got = pipeline.run(req, lambda _r: True)
        except PermissionDeniedError:
            got = False
            (denial,) = plane.audit.read(actor=user.name)
            assert (denial.action, denial.details["reason"]) == ("command.denied",
                                                                 "permission_denied")
        outcomes.append((line, scope, tag, want, got))
    wrong = [o for o in outcomes if o[3] != o[4]]
    assert wrong == [], wrong
    assert any(o[4] for o in outcomes) == (role != "viewer")


@pytest.mark.parametrize("role", ["viewer", "responder", "advanced", "admin"])
@pytest.mark.parametrize(("scope", "tag"), SCOPES)
def test_reads_follow_role_and_scope(plane: ControlPlane, role: str, scope: str | None,
                                     tag: str) -> None:
    user = _user(plane, role, scope)
    owner = _user(plane, "admin", None)
    session = plane.sessions.open(owner.name, f"table-{tag.split(':')[1]}")
    want = expected(plane.policies.policy.role_permissions(role), [PERM_VIEW], scope, tag)
    req = Request(plane, target=f"/sessions/{session.id}", user=user, session_id=session.id)
    try:
        checks.route_pipeline(PERM_VIEW, at_session).check(req)
        got = True
    except PermissionDeniedError:
        got = False
    assert got == want
    (entry,) = plane.audit.read(actor=user.name)
    assert entry.action == ("access.allowed" if want else "access.denied")


def test_a_session_opens_only_where_the_role_may_open_one(plane: ControlPlane) -> None:
    for role, (scope, tag) in itertools.product(["viewer", "responder", "admin"], SCOPES):
        user = _user(plane, role, scope)
        device = f"table-{tag.split(':')[1]}"
        req = Request(plane, target=device, user=user, device_id=device)
        want = expected(plane.policies.policy.role_permissions(role), ["session.open"],
                        scope, tag)
        try:
            got = checks.OPEN_SESSION.run(req, lambda _r: True)
        except PermissionDeniedError:
            got = False
        assert got == want, (role, scope, tag)


def test_an_exception_inside_a_check_is_an_audited_denial(plane: ControlPlane,
                                                          tmp_path: Path) -> None:
    def broken(_req: Request) -> None:
        raise RuntimeError("a bug in a check")

    user = _user(plane, "admin", None)
    pipeline = checks.OPEN_SESSION.then(broken)
    req = Request(plane, target="table-web", user=user, device_id="table-web")
    with pytest.raises(PermissionDeniedError) as caught:
        pipeline.run(req, lambda _r: True)
    assert caught.value.code == "check_failed"
    (entry,) = plane.audit.read(actor=user.name)
    assert (entry.action, entry.decision, entry.details["reason"]) == (
        "session.denied", "denied", "check_failed")
