"""One exception tree for liveresponse: each class says when it is raised and how it surfaces.

`code` is the stable machine name (also used in agent results), `http_status` what the API
answers, `exit_code` what the CLI exits with.
"""

from __future__ import annotations


class LiveResponseError(Exception):
    """Raised when anything in liveresponse fails in a way a user should be told about."""

    code = "error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        """The error as it travels in JSON: code, message and (if any) what to do."""
        out = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class ConfigurationError(LiveResponseError):
    """Raised when settings or the environment make it impossible to start."""

    code = "configuration"
    exit_code = 10


class UsageError(LiveResponseError):
    """Raised when a command line or its arguments do not parse."""

    code = "usage"
    http_status = 400
    exit_code = 2


class UnknownCommandError(UsageError):
    """Raised when a command name is not in the registry."""

    code = "unknown_command"


class InvalidDeviceIdError(UsageError):
    """Raised when a device id is not 1-64 characters of [A-Za-z0-9._-]."""

    code = "invalid_device_id"


class AuthenticationError(LiveResponseError):
    """Raised when a request carries no token, or one that is unknown or revoked."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 3


class PermissionDeniedError(LiveResponseError):
    """Raised when an authenticated user lacks the permission an action needs."""

    code = "permission_denied"
    http_status = 403
    exit_code = 4


class CheckFailedError(PermissionDeniedError):
    """Raised when a check of the pipeline could not be completed: the request is denied."""

    code = "check_failed"


class NotFoundError(LiveResponseError):
    """Raised when a named object (device, session, command, user) does not exist."""

    code = "not_found"
    http_status = 404
    exit_code = 5


class UnknownDeviceError(NotFoundError):
    """Raised when a device id has never registered with the orchestrator."""

    code = "unknown_device"


class SessionNotFoundError(NotFoundError):
    """Raised when a session id does not exist."""

    code = "unknown_session"


class CommandNotFoundError(NotFoundError):
    """Raised when a command id does not exist."""

    code = "unknown_command_id"


class LibraryItemNotFoundError(NotFoundError):
    """Raised when a name is not in the library (add it with `lr library add`)."""

    code = "unknown_library_item"


class LibraryItemExistsError(UsageError):
    """Raised when a library name is added again without --replace."""

    code = "library_item_exists"
    http_status = 409


class LibraryTooLargeError(UsageError):
    """Raised when a file offered to the library is over the configured size limit."""

    code = "too_large"
    http_status = 413


class SessionStateError(LiveResponseError):
    """Raised when a session exists but cannot take commands."""

    code = "session_unusable"
    http_status = 409
    exit_code = 6


class SessionClosedError(SessionStateError):
    """Raised when a session was closed by its owner or an admin."""

    code = "session_closed"


class SessionExpiredError(SessionStateError):
    """Raised when a session passed its idle timeout or its maximum length."""

    code = "session_expired"


class CommandExpiredError(LiveResponseError):
    """Raised when no agent started a command before its expiry (device offline or busy)."""

    code = "expired"
    http_status = 504
    exit_code = 7


class CommandFailedError(LiveResponseError):
    """Raised on the agent when a command ran but could not do what was asked."""

    code = "failed"
    http_status = 200
    exit_code = 8


class PathNotFoundError(CommandFailedError):
    """Raised when a path named in a command does not exist on the endpoint."""

    code = "path_not_found"


class NotADirectoryError_(CommandFailedError):
    """Raised when a command that needs a directory is given something else."""

    code = "not_a_directory"


class NotAFileError(CommandFailedError):
    """Raised when a command that reads file content is given a directory or special file."""

    code = "not_a_file"


class EndpointPermissionError(CommandFailedError):
    """Raised when the agent's own OS account may not read or act on the target."""

    code = "endpoint_permission_denied"


class ProcessNotFoundError(CommandFailedError):
    """Raised when a pid does not name a running process."""

    code = "process_not_found"


class ProtectedProcessError(CommandFailedError):
    """Raised when a command would end pid 1, the agent itself or its parent."""

    code = "protected_process"


class CommandTimeoutError(CommandFailedError):
    """Raised when a command ran past its time limit and was stopped."""

    code = "timeout"


class IsolationUnavailableError(CommandFailedError):
    """Raised when the endpoint cannot isolate itself: not Linux, no `nft`, no privilege, or
    the agent does not know its broker's address (isolating would cut it off)."""

    code = "isolation_unavailable"


class FirewallError(CommandFailedError):
    """Raised when `nft` refused our ruleset, or the table is not in place after it ran."""

    code = "firewall_failed"


class LibraryIntegrityError(CommandFailedError):
    """Raised on the agent when a library file read from the broker is missing, or its size or
    sha256 differs from the signed ones: nothing is written or run."""

    code = "library_integrity"


class SignatureError(LiveResponseError):
    """Raised when a command envelope is unsigned, signed by a key the agent does not trust, or
    its signature does not match its content (`code`: unsigned, unknown_key, bad_signature)."""

    code = "bad_signature"
    http_status = 403
    exit_code = 14

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class AuditChainBrokenError(LiveResponseError):
    """Raised when the audit chain (in Redis or in an exported file) has an entry edited,
    deleted or reordered, or a checkpoint that does not verify."""

    code = "audit_broken"
    http_status = 409
    exit_code = 12


class CommandRejectedError(LiveResponseError):
    """Raised on the agent when it refuses to run a task at all (replayed, cancelled, expired,
    addressed to another device, or unknown)."""

    code = "rejected"
    http_status = 409
    exit_code = 9


class InvalidResultError(LiveResponseError):
    """Raised when a command's result does not fit its command's result model (an agent on
    another version of the contract, or a record changed in Redis): such a result is withheld,
    never shown as if it were valid."""

    code = "invalid_result"
    http_status = 502
    exit_code = 15


class PolicyError(UsageError):
    """Raised when a policy file or text is invalid: names the line and field at fault."""

    code = "invalid_policy"


class ApprovalStateError(LiveResponseError):
    """Raised when a command cannot be approved or denied: not waiting for approval any more,
    or its approval window passed."""

    code = "not_pending_approval"
    http_status = 409
    exit_code = 6


class IsADirectoryError_(CommandFailedError):
    """Raised when a command that acts on one file is given a directory without --recursive."""

    code = "is_a_directory"


class ProtectedPathError(CommandFailedError):
    """Raised when remediate would move a system-critical path (the deny list, the agent's own
    files) and --force was not given."""

    code = "protected_path"


class QuarantineNotFoundError(CommandFailedError):
    """Raised when a quarantine id names no item in the agent's vault."""

    code = "unknown_quarantine_id"


class PathExistsError(CommandFailedError):
    """Raised when undo would restore onto a path that is taken again (and --overwrite was not
    given, or what is there is a directory)."""

    code = "path_exists"


class QuarantineIntegrityError(CommandFailedError):
    """Raised when a quarantined item's bytes no longer match the sha256 recorded when it was
    taken, or a copy into or out of the vault did not verify."""

    code = "quarantine_integrity"


class QuarantineIncompleteError(CommandFailedError):
    """Raised when a copied item is safe in the vault but what was at its path could not all be
    removed (the message names the quarantine id that keeps it)."""

    code = "quarantine_incomplete"


class UnsupportedOnEndpointError(CommandFailedError):
    """Raised when the endpoint lacks what a command needs: its platform, or a facility such as
    a running systemd."""

    code = "unsupported_on_endpoint"


class SecretFileError(CommandFailedError):
    """Raised when a content command (cat, head, tail, strings, hexdump) is pointed at a file
    that holds password hashes (/etc/shadow, /etc/gshadow): its bytes would land in the result
    and the command records."""

    code = "secret_file"


class FileTooLargeError(CommandFailedError):
    """Raised when a file to copy off the endpoint is over the size limit (the orchestrator's or
    the agent's); refused before any byte moves."""

    code = "file_too_large"


class FileChangedError(CommandFailedError):
    """Raised when a file vanished, was replaced, shrank, grew or was modified while it was being
    copied: the copy would match no state the file was ever in."""

    code = "file_changed"


class FileLockedError(CommandFailedError):
    """Raised when reading a file would block or is refused as busy (a mandatory lock, or a
    kernel file that waits for data)."""

    code = "file_locked"


class TransferError(CommandFailedError):
    """Raised when a file transfer over the broker fails: a malformed or out-of-order stream,
    the evidence store unable to write, or the other side gone."""

    code = "transfer_failed"


class TransferStalledError(TransferError):
    """Raised when the other side of a file transfer made no progress within the stall
    timeout (the receiver stopped reading, or the sender stopped sending)."""

    code = "transfer_stalled"


class EvidenceDiskFullError(TransferError):
    """Raised when the orchestrator's evidence store runs out of space (or quota) while a file
    is received: nothing is kept, and the temp file is removed so the space is free again."""

    code = "evidence_disk_full"


class HashMismatchError(TransferError):
    """Raised when the sha256 computed on arrival differs from the one the agent computed while
    reading (or the sizes differ): the bytes were altered or lost on the way; nothing is kept."""

    code = "hash_mismatch"


class EvidenceNotFoundError(NotFoundError):
    """Raised when a sha256 names no object in the evidence store."""

    code = "unknown_evidence"


class LedgerError(LiveResponseError):
    """Raised on the agent when its once-only ledger on the endpoint's disk cannot be opened,
    read or written: the command is refused (never run without its claim recorded)."""

    code = "ledger_unavailable"


class FleetIncompleteError(LiveResponseError):
    """Raised (by the CLI) when a fleet command did not complete on every device it named:
    some were denied, failed, expired or were cancelled. The table says which."""

    code = "fleet_incomplete"
    http_status = 409
    exit_code = 16


class RedisUnavailableError(LiveResponseError):
    """Raised when the orchestrator cannot reach its Redis (connection refused, reset or timed
    out): the request is answered 503 and the orchestrator reconnects by itself once Redis is
    back. The message names the address, never a password."""

    code = "redis_unavailable"
    http_status = 503
    exit_code = 17


class ScriptFailedError(CommandFailedError):
    """Raised (by the CLI) when a `runscript` completed but its script exited non-zero or was
    stopped at its time limit: the result, with the script's exit code, is shown all the same."""

    code = "script_failed"
    exit_code = 18
