"""The checks every entry point is built from, and the pipelines declared with them.

Each check reads what the checks before it found on the `Request` and raises a typed denial,
or fills in one more thing. The pipelines at the bottom are the only order they run in.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.commands.records import expire_pending, load_record
from orchestrator.commands.table import prepare
from orchestrator.policies.isolation import check_isolation
from orchestrator.policies.model import PERM_ADMIN, PERM_SESSION
from orchestrator.policies.pipeline import Check, Pipeline, Request
from orchestrator.policies.rbac import authorize, is_allowed
from orchestrator.state.identity import TOKEN_RE, hash_token
from orchestrator.state.identity import authenticate as authenticate_token
from orchestrator.state.reads import Reads
from orchestrator.state.sessions import SESSION_ID_RE
from tasks import clock
from tasks.envelope import CommandStatus
from tasks.errors import (
    ApprovalStateError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from tasks.parsing import parse_line
from tasks.registry import REGISTRY

# --- who is asking -------------------------------------------------------------------------


def reads_of(req: Request) -> Reads:
    """The request's reads: at the first, its token, user, session and device are fetched in
    one round trip where the plane's hints name them (state.reads); each value is still read
    for this request."""
    if req.reads is None:
        token = req.token.strip() if req.user is None and req.token else None
        session_id = req.session_id if req.session_id and SESSION_ID_RE.fullmatch(
            req.session_id) else None
        req.reads = req.plane.hints.prefetch(
            hash_token(token) if token and TOKEN_RE.fullmatch(token) else None, session_id)
    return req.reads


def authenticate(req: Request) -> None:
    """The bearer token names a user (in-process callers hand the user in directly)."""
    if req.user is not None:
        return
    if not req.token:
        raise AuthenticationError("missing bearer token",
                                  hint="pass a token with LR_TOKEN or --token")
    req.user = authenticate_token(reads_of(req), req.plane.keys, req.token)
    req.plane.hints.learn_user(hash_token(req.token.strip()), req.user.name)


def requires(permission: str) -> Check:
    """A check: the user holds `permission` (on the request's device, when it has one)."""

    def holds_permission(req: Request) -> None:
        user = req.need_user()
        req.permission = permission
        device = req.device
        authorize(req.plane.policies.policy, user.name, user.grants, permission,
                  device.id if device else None, device.tags if device else None)

    holds_permission.__name__ = f"requires({permission})"
    return holds_permission


def authorize_command(req: Request) -> None:
    """The user holds every permission the command needs on its device (flags included)."""
    user, spec, args, device = req.need_user(), req.spec, req.args, req.device
    assert spec is not None and args is not None and device is not None
    for permission in spec.permissions_for(args):
        authorize(req.plane.policies.policy, user.name, user.grants, permission,
                  device.id, device.tags)


def owner_or_admin(req: Request) -> None:
    """The session is the user's own, or the user is an admin."""
    user, session = req.need_user(), req.session
    assert session is not None
    if session.user != user.name and not is_allowed(req.plane.policies.policy, user.grants,
                                                    PERM_ADMIN):
        raise PermissionDeniedError(
            f"session {session.id} belongs to {session.user!r}",
            hint="only its owner or an admin may act on it")


def requester_or_admin(req: Request) -> None:
    """The command was the user's own request, or the user is an admin."""
    user, record = req.need_user(), req.record
    assert record is not None
    if record.user != user.name and not is_allowed(req.plane.policies.policy, user.grants,
                                                   PERM_ADMIN):
        raise PermissionDeniedError(
            f"command {record.command_id} was requested by {record.user!r}",
            hint="only its requester or an admin may cancel it")


# --- what it is about ----------------------------------------------------------------------


def load_device(req: Request) -> None:
    """The device the request names (or its session's, or its command's) is registered."""
    if req.device_id is None:
        raise UsageError("no device given", hint="name a device id")
    req.device = req.plane.devices.get(req.device_id, req.reads)


def load_session(req: Request) -> None:
    """The session exists; its device becomes the request's."""
    assert req.session_id is not None
    req.session = req.plane.sessions.get(req.session_id)
    req.device_id = req.session.device_id


def session_usable(req: Request) -> None:
    """The session is the user's, open, not idle too long and not past its maximum length."""
    assert req.session_id is not None
    req.session = req.plane.sessions.check_usable(req.session_id, req.need_user().name,
                                                  reads_of(req))
    req.device_id = req.session.device_id
    req.plane.hints.learn_device(req.session_id, req.device_id)


def load_command(req: Request) -> None:
    """The command id names a recorded command; its device and session become the request's."""
    assert req.command_id is not None
    req.record = load_record(req.plane, req.command_id)
    req.device_id = req.record.device_id
    req.session_id = req.record.session_id or None


def parse_command(req: Request) -> None:
    """The line parses into a registered command and its argument model."""
    assert req.line is not None
    req.spec, req.args = parse_line(req.line)


def command_of_record(req: Request) -> None:
    """The recorded command's spec and its arguments as prepared when it was requested."""
    record = req.record
    assert record is not None
    if record.args is None:
        req.spec, req.args = parse_line(record.line)
    else:
        req.spec = REGISTRY[record.command]
        req.args = req.spec.args_model.model_validate(record.args)


def device_level_only(req: Request) -> None:
    """The command is one that runs on a device without a session (containment)."""
    assert req.spec is not None
    if not req.spec.device_level:
        raise UsageError(f"{req.spec.name!r} runs inside a session, not on a device directly",
                         hint="open one with `lr session open DEVICE`")


def expiry_allowed(req: Request) -> None:
    """The wait asked for (`--expires`) is positive and within the configured maximum."""
    req.expiry_s(req.plane.settings)


def command_id_unused(req: Request) -> None:
    """A command id the caller chose (a resumed playbook step) is not recorded already."""
    if req.caller_command_id and req.command_id is not None and req.plane.client.exists(
            req.plane.keys.command(req.command_id)):
        raise UsageError(f"command id {req.command_id} is recorded already",
                         hint="a command id is issued once; look at that command instead")


def fleet_command(req: Request) -> None:
    """The command can run on many devices at once: it sends no file back (that needs a
    receiver per device) and does not act on a session (cd)."""
    spec = req.spec
    assert spec is not None
    if spec.sends_file:
        raise UsageError(f"{spec.name!r} sends a file back and runs on one device at a time",
                         hint="open a session on each device, or run a playbook per device")
    if spec.session_only:
        raise UsageError(f"{spec.name!r} acts on a session; a fleet command has none",
                         hint="give absolute paths instead")


def may_run_without_session(req: Request) -> None:
    """A command that would need a session on the device needs the right to open one there
    (containment commands need only their own permission)."""
    user, spec, device = req.need_user(), req.spec, req.device
    assert spec is not None and device is not None
    if not spec.device_level:
        authorize(req.plane.policies.policy, user.name, user.grants, PERM_SESSION,
                  device.id, device.tags)


def isolation_allows(req: Request) -> None:
    """While the device is isolated, only commands allowed while isolated pass."""
    assert req.device is not None and req.spec is not None
    check_isolation(req.device, req.spec)


def approval_rule(req: Request) -> None:
    """Whether a second person must approve (the rule is kept; nothing is denied here)."""
    assert req.device is not None and req.spec is not None
    req.rule = req.plane.policies.policy.approval_rule(req.spec.name, req.device.tags)


def prepare_arguments(req: Request) -> None:
    """Names only the orchestrator can resolve (library files, limits) resolve."""
    assert req.spec is not None and req.args is not None
    req.args = prepare(req.plane, req.spec, req.args)


# --- second-person approval ----------------------------------------------------------------


def still_pending(req: Request) -> None:
    """The command waits for approval, and its approval window has not passed."""
    record = req.record
    assert record is not None
    if record.status is not CommandStatus.PENDING_APPROVAL:
        raise ApprovalStateError(
            f"command {record.command_id} is {record.status.value}, not waiting for approval",
            hint="only a command in state pending-approval can be approved or denied")
    if record.approval_expires_at is not None and clock.now() > record.approval_expires_at:
        expire_pending(req.plane, record.command_id)
        raise ApprovalStateError(
            f"command {record.command_id} waited longer than its approval window and expired",
            hint="the requester must run it again")


def second_person(req: Request) -> None:
    """Whoever decides is not whoever asked."""
    user, record = req.need_user(), req.record
    assert record is not None
    if record.user == user.name:
        raise PermissionDeniedError(
            f"user {user.name!r} requested command {record.command_id}: a second person must "
            "decide it", hint="ask another user with the right role to approve it")


def requester_session_usable(req: Request) -> None:
    """The session the command was requested in (if any) is still usable by its requester."""
    record = req.record
    assert record is not None
    req.session = (req.plane.sessions.check_usable(record.session_id, record.user)
                   if record.session_id else None)


# --- jobs ----------------------------------------------------------------------------------


def load_job(job: int) -> Check:
    """A check: job number `job` of the request's session names a command."""

    def job_exists(req: Request) -> None:
        from orchestrator.commands.records import session_records

        assert req.session_id is not None
        for record in session_records(req.plane, req.session_id):
            if record.job == job:
                req.record = record
                req.command_id = record.command_id
                return
        raise NotFoundError(f"session {req.session_id} has no job {job}",
                            hint=f"list them with `lr jobs {req.session_id}`")

    job_exists.__name__ = f"load_job({job})"
    return job_exists


# --- the declared pipelines ----------------------------------------------------------------

#: A command line in a session.
COMMAND = Pipeline("command", (
    authenticate, session_usable, parse_command, expiry_allowed, command_id_unused,
    load_device, authorize_command, isolation_allows, approval_rule, prepare_arguments,
), denied="command.denied")

#: A command on a device with no session (isolate, release).
DEVICE_COMMAND = Pipeline("device command", (
    authenticate, parse_command, expiry_allowed, device_level_only, load_device,
    authorize_command,
    isolation_allows, approval_rule, prepare_arguments,
), denied="command.denied")

#: A command line for many devices (a batch): what holds for all of them, checked once.
FLEET = Pipeline("fleet command", (
    authenticate, parse_command, fleet_command, expiry_allowed, prepare_arguments,
), denied="batch.denied")

#: One device of a batch (its user, command and device already known): checked per device.
FLEET_DEVICE = Pipeline("fleet device", (
    may_run_without_session, authorize_command, isolation_allows, approval_rule,
), denied="command.denied")

#: A second person releases a held command to its device.
APPROVE = Pipeline("approve", (
    authenticate, load_command, still_pending, second_person, command_of_record, load_device,
    authorize_command, isolation_allows, requester_session_usable,
), denied="approval.approve_refused")

#: A second person refuses a held command.
DENY = Pipeline("deny", (
    authenticate, load_command, still_pending, second_person, command_of_record, load_device,
    authorize_command,
), denied="approval.deny_refused")

#: Open a session on a device.
OPEN_SESSION = Pipeline("session.open", (
    authenticate, load_device, requires(PERM_SESSION),
), denied="session.denied")

#: Close a session (its unfinished commands are cancelled).
CLOSE_SESSION = Pipeline("session.close", (
    authenticate, load_session, owner_or_admin,
), denied="session.denied")


def cancel_job(job: int) -> Pipeline:
    """Cancel job `job` of a session: its owner or an admin, with the command's permissions."""
    return Pipeline("cancel", (
        authenticate, load_session, owner_or_admin, load_job(job), command_of_record,
        load_device, authorize_command,
    ), denied="job.cancel_refused")


#: Cancel one command of a batch (the user is known): the permissions it needed there.
CANCEL_COMMAND = Pipeline("cancel", (
    authenticate, load_command, requester_or_admin, command_of_record, load_device,
    authorize_command,
), denied="command.cancel_refused")


#: How a route finds the device it is about, before its permission is checked.
Locate = Callable[[Request], None]


def route_pipeline(permission: str | None, locate: Locate | None = None, *,
                   audited: bool = True) -> Pipeline:
    """A route's checks: authenticate, find its device (if any), hold `permission` there.

    `audited`: write an `access.allowed` entry (reads); a route whose action writes its own
    outcome entry passes False.
    """
    checks: list[Check] = [authenticate]
    if locate is not None:
        checks.append(locate)
    if permission is not None:
        checks.append(requires(permission))
    return Pipeline(f"route {permission or 'authenticated'}", tuple(checks),
                    denied="access.denied", allowed="access.allowed" if audited else None)
