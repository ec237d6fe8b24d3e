"""Errors only the CLI raises, and the way back from wire error codes to exception classes."""

from __future__ import annotations

from typing import Any

from tasks.errors import (
    CommandExpiredError,
    CommandFailedError,
    CommandRejectedError,
    LiveResponseError,
    PermissionDeniedError,
)


class OrchestratorUnreachableError(LiveResponseError):
    """Raised when the CLI cannot connect to the orchestrator's HTTP API, or it never answers."""

    code = "unreachable"
    exit_code = 11


class AwaitingApprovalError(LiveResponseError):
    """Raised (exit 13) when `lr run` answers for a command the policy holds for a second person."""

    code = "pending_approval"
    exit_code = 13


#: The error class whose exit code `lr run` uses for each final status but `completed`.
STATUS_ERRORS: dict[str, type[LiveResponseError]] = {
    "failed": CommandFailedError,
    "expired": CommandExpiredError,
    "rejected": CommandRejectedError,
    "cancelled": CommandRejectedError,
    "denied": PermissionDeniedError,
}


def error_classes() -> dict[str, type[LiveResponseError]]:
    """Every LiveResponseError subclass by its code; a parent wins over a child sharing its code."""
    found: dict[str, type[LiveResponseError]] = {LiveResponseError.code: LiveResponseError}
    queue: list[type[LiveResponseError]] = [LiveResponseError]
    # Breadth first, so parents are seen before the children that might inherit their code.
    while queue:
        for sub in queue.pop(0).__subclasses__():
            found.setdefault(sub.code, sub)
            queue.append(sub)
    return found


def error_from_wire(error: Any) -> LiveResponseError:
    """The exception an `{"code", "message", "hint"}` object stands for (unknown code: the base)."""
    if not isinstance(error, dict):
        return LiveResponseError(f"malformed error from the orchestrator: {error!r:.200}")
    code = str(error.get("code") or "")
    message = str(error.get("message") or code or "unknown error")
    hint = error.get("hint")
    cls = error_classes().get(code, LiveResponseError)
    return cls(message, hint=str(hint) if hint else None)


def record_error(record: dict[str, Any]) -> LiveResponseError | None:
    """None for a completed command record, else the error saying what went wrong (for a
    completed one whose result the orchestrator withheld: that error, `invalid_result`)."""
    status = str(record.get("status", ""))
    if status == "completed":
        withheld = record.get("error")
        return None if withheld is None else error_from_wire(withheld)
    command = str(record.get("command") or "command")
    if status == "pending-approval":
        command_id = record.get("command_id")
        return AwaitingApprovalError(
            f"{command} waits for approval by a second person (command {command_id})",
            hint=f"another user with the right role runs `lr approve {command_id}`; "
                 f"`lr command show {command_id} --wait` then shows its result")
    raw_error = record.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    cls = STATUS_ERRORS.get(status, LiveResponseError)
    default = (
        "no details given"
        if status in STATUS_ERRORS
        else "the orchestrator answered before the command finished"
    )
    message = str(error.get("message") or default)
    hint = error.get("hint")
    return cls(f"{command} {status}: {message}", hint=str(hint) if hint else None)


def describe_error(exc: LiveResponseError) -> str:
    """`message (hint)`, or just the message when there is no hint."""
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


def format_error(exc: LiveResponseError) -> str:
    """The one line a user sees on stderr: `lr: message (hint)`."""
    return f"lr: {describe_error(exc)}"
