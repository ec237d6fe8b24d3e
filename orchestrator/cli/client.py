"""A small HTTP client of the orchestrator's API; errors come back as our exception classes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from orchestrator.cli.errors import OrchestratorUnreachableError, error_from_wire
from tasks.errors import AuthenticationError, ConfigurationError, LiveResponseError

#: Seconds an ordinary API call may take.
DEFAULT_TIMEOUT_S = 30.0
#: Seconds a command may take: the API answers only once the agent did (expiry + time limit).
RUN_TIMEOUT_S = 180.0
#: Seconds `lr audit verify` may take: the orchestrator checks every entry of the chain.
VERIFY_TIMEOUT_S = 600.0
#: Bytes read from a file at a time while uploading it to the library.
UPLOAD_CHUNK_BYTES = 1024 * 1024
#: What every "cannot reach" error tells the user to do.
UNREACHABLE_HINT = "start it with 'lr orchestrator serve' or set LR_API_URL"


class ApiClient:
    """Calls the orchestrator as one user (bearer token); one method per route."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        run_timeout_s: float = RUN_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.run_timeout_s = max(run_timeout_s, timeout)
        headers = {"Accept": "application/json"}
        if token:
            token = token.strip()
            if not token.isascii() or not token.isprintable():
                # Checked here because httpx cannot even send such a header.
                raise AuthenticationError(
                    "malformed API token", hint="pass a token with LR_TOKEN or --token"
                )
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ConfigurationError(
                f"invalid API URL {base_url!r}: {exc}", hint="e.g. http://127.0.0.1:8765"
            ) from None

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def whoami(self) -> dict[str, Any]:
        """The caller's user name, roles and grants."""
        return self._call("GET", "/whoami")

    def devices(self, tag: str | None = None, online: bool | None = None
                ) -> list[dict[str, Any]]:
        """Registered devices (those tagged `tag`, those online or offline, if given)."""
        params: dict[str, str] = {}
        if tag is not None:
            params["tag"] = tag
        if online is not None:
            params["online"] = "true" if online else "false"
        return self._call("GET", "/devices", params=params)

    def start_batch(self, selector: str, line: str, expires_s: float | None = None
                    ) -> dict[str, Any]:
        """Send `line` to every device `selector` names; the new batch."""
        return self._call("POST", "/batches", json={"selector": selector, "line": line,
                                                    "expires_s": expires_s})

    def batches(self) -> list[dict[str, Any]]:
        """The newest batches (counts only)."""
        return self._call("GET", "/batches")

    def batch(self, batch_id: str) -> dict[str, Any]:
        """One batch with each device's record."""
        return self._call("GET", f"/batches/{_segment(batch_id)}")

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Cancel the batch's unfinished commands; the batch, with who was cancelled."""
        return self._call("POST", f"/batches/{_segment(batch_id)}/cancel")

    def open_session(self, device: str, cwd: str | None = None) -> dict[str, Any]:
        """Open a session on `device` in directory `cwd` (default: the device's root); the
        session object (with its `id` and `cwd`)."""
        return self._call("POST", "/sessions", json={"device_id": device, "cwd": cwd})

    def get_session(self, session_id: str) -> dict[str, Any]:
        """One session as it stands now."""
        return self._call("GET", f"/sessions/{_segment(session_id)}")

    def list_sessions(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        """Open sessions, or every session when `all`."""
        return self._call("GET", "/sessions", params={"all": "true" if all else "false"})

    def close_session(self, session_id: str) -> dict[str, Any]:
        """Close a session; the closed session."""
        return self._call("DELETE", f"/sessions/{_segment(session_id)}")

    def run(self, session_id: str, line: str, background: bool = False,
            expires_s: float | None = None, *, timeout_s: float | None = None
            ) -> dict[str, Any]:
        """Run a command line in a session and wait for its record (any final status); in the
        background (or with a trailing `&`), get the record at once, with its job number.
        `expires_s`: how long it may wait for an offline device; `timeout_s`: how long to
        wait for the answer (default: long enough for any command)."""
        return self._call(
            "POST",
            f"/sessions/{_segment(session_id)}/commands",
            json={"line": line, "background": background, "expires_s": expires_s},
            timeout=timeout_s or self.run_timeout_s,
        )

    def jobs(self, session_id: str) -> list[dict[str, Any]]:
        """The session's background jobs."""
        return self._call("GET", f"/sessions/{_segment(session_id)}/jobs")

    def job(self, session_id: str, job: int) -> dict[str, Any]:
        """One job's record as it stands now."""
        return self._call("GET", f"/sessions/{_segment(session_id)}/jobs/{int(job)}")

    def cancel_job(self, session_id: str, job: int) -> dict[str, Any]:
        """Cancel a job (stopped on the agent when running); its record."""
        return self._call("POST", f"/sessions/{_segment(session_id)}/jobs/{int(job)}/cancel")

    def isolate(self, device_id: str, mode: str, allow: str | None) -> dict[str, Any]:
        """Isolate a device and wait for the command's record (admin)."""
        return self._call("POST", f"/devices/{_segment(device_id)}/isolate",
                          json={"mode": mode, "allow": allow}, timeout=self.run_timeout_s)

    def release(self, device_id: str) -> dict[str, Any]:
        """Release a device's isolation and wait for the command's record (admin)."""
        return self._call("POST", f"/devices/{_segment(device_id)}/release", json={},
                          timeout=self.run_timeout_s)

    def get_command(self, command_id: str) -> dict[str, Any]:
        """One command's record."""
        return self._call("GET", f"/commands/{_segment(command_id)}")

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit entries matching session, device, actor, command, since, until, limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/audit", params=params)

    def audit_verify(self) -> dict[str, Any]:
        """The verifier's verdict on the whole audit chain."""
        return self._call("GET", "/audit/verify", timeout=max(VERIFY_TIMEOUT_S, self.timeout))

    @contextmanager
    def audit_export(self) -> Iterator[Iterator[str]]:
        """The whole audit export as text (header line first), in chunks as they arrive."""
        with self._reaching(None), self._http.stream("GET", "/audit/export") as resp:
            if not resp.is_success:
                resp.read()
                self._answer(resp, "/audit/export")
            try:
                yield resp.iter_text()
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise OrchestratorUnreachableError(
                    f"the export from {self.base_url} broke off ({type(exc).__name__})",
                    hint="run it again; see the orchestrator's log",
                ) from None

    def evidence(self) -> list[dict[str, Any]]:
        """The evidence store's acquisitions the caller may collect from, oldest first."""
        return self._call("GET", "/evidence")

    @contextmanager
    def evidence_download(self, sha256: str) -> Iterator[tuple[int | None, Iterator[bytes]]]:
        """An evidence object as (size in bytes if known, its bytes streamed as they arrive)."""
        path = f"/evidence/{_segment(sha256)}"
        with self._reaching(None), self._http.stream("GET", path) as resp:
            if not resp.is_success:
                resp.read()
                self._answer(resp, path)
            length = resp.headers.get("content-length")
            try:
                yield (int(length) if length and length.isdigit() else None), resp.iter_bytes()
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise OrchestratorUnreachableError(
                    f"the download from {self.base_url} broke off ({type(exc).__name__})",
                    hint="run it again; see the orchestrator's log",
                ) from None

    def audit_trim(self, before: float) -> dict[str, Any]:
        """Remove audit entries older than `before` under a signed checkpoint (admin)."""
        return self._call("POST", "/audit/trim", json={"before": before})

    def users(self) -> list[dict[str, Any]]:
        """Every user with their grants (admin)."""
        return self._call("GET", "/users")

    def add_user(self, name: str, grants: list[dict[str, Any]]) -> dict[str, Any]:
        """Create a user holding `grants` ({"role", "scope"}) (admin)."""
        return self._call("POST", "/users", json={"name": name, "grants": grants})

    def add_grant(self, name: str, role: str, scope: str | None) -> dict[str, Any]:
        """Give user `name` one more role, on every device or on group `scope` (admin)."""
        return self._call("POST", f"/users/{_segment(name)}/grants",
                          json={"role": role, "scope": scope})

    def create_token(self, user: str, ttl_s: float | None = None) -> dict[str, Any]:
        """A new API token of `user`: {"user", "token", "token_id", "expires_at"} (admin)."""
        return self._call("POST", f"/users/{_segment(user)}/tokens", json={"ttl_s": ttl_s})

    def revoke_token(self, token_or_id: str) -> dict[str, Any]:
        """Revoke a token given as itself or by its id (admin, or the token's owner)."""
        return self._call("POST", "/tokens/revoke", json={"token": token_or_id})

    def remove_device(self, device_id: str) -> dict[str, Any]:
        """Forget a decommissioned device (admin)."""
        return self._call("DELETE", f"/devices/{_segment(device_id)}")

    def set_tags(self, device_id: str, tags: list[str]) -> dict[str, Any]:
        """Replace a device's tags (its groups) (admin)."""
        return self._call("PUT", f"/devices/{_segment(device_id)}/tags", json={"tags": tags})

    def policy(self) -> dict[str, Any]:
        """The policy in force: {"yaml", "digest", "set_by", "set_at", "default"}."""
        return self._call("GET", "/policy")

    def set_policy(self, text: str, source: str) -> dict[str, Any]:
        """Make `text` the policy in force (admin); errors name line and field."""
        return self._call("PUT", "/policy", json={"yaml": text, "source": source})

    def library(self) -> list[dict[str, Any]]:
        """Every library file: name, sha256, size, description, who added it and when."""
        return self._call("GET", "/library")

    def library_add(self, name: str, path: Path, *, description: str = "",
                    replace: bool = False) -> dict[str, Any]:
        """Stream the file at `path` into the library as `name` (admin); the stored item."""
        size = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as stream:
                while data := stream.read(UPLOAD_CHUNK_BYTES):
                    yield data

        return self._call("PUT", f"/library/{_segment(name)}", content=chunks(),
                          params={"description": description,
                                  "replace": "true" if replace else "false"},
                          headers={"Content-Length": str(size),
                                   "Content-Type": "application/octet-stream"},
                          timeout=self.run_timeout_s)

    def library_remove(self, name: str) -> dict[str, Any]:
        """Remove a library file (admin); the removed item."""
        return self._call("DELETE", f"/library/{_segment(name)}")

    def approvals(self) -> list[dict[str, Any]]:
        """Commands waiting for a second person."""
        return self._call("GET", "/approvals")

    def approve(self, command_id: str) -> dict[str, Any]:
        """Approve a pending command and wait for its record (any final status)."""
        return self._call("POST", f"/commands/{_segment(command_id)}/approve",
                          timeout=self.run_timeout_s)

    def deny(self, command_id: str, reason: str | None) -> dict[str, Any]:
        """Deny a pending command; its record."""
        return self._call("POST", f"/commands/{_segment(command_id)}/deny",
                          json={"reason": reason})

    def playbooks(self) -> list[dict[str, Any]]:
        """The registered playbooks (those alerts may start)."""
        return self._call("GET", "/playbooks")

    def start_playbook(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start a playbook on a device or a selector's devices; {"runs": [...]}."""
        return self._call("POST", "/playbooks/runs", json=body)

    def playbook_runs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/playbooks/runs")

    def playbook_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/playbooks/runs/{_segment(run_id)}")

    def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """Send one request; return its JSON or raise the error it carries."""
        with self._reaching(timeout):
            resp = self._http.request(method, path, timeout=timeout or self.timeout, **kwargs)
        return self._answer(resp, path)

    @contextmanager
    def _reaching(self, timeout: float | None) -> Iterator[None]:
        """Turn httpx's transport errors inside the block into our exceptions."""
        try:
            yield
        except httpx.UnsupportedProtocol:
            raise ConfigurationError(
                f"invalid API URL {self.base_url!r}", hint="use http:// or https://"
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise OrchestratorUnreachableError(
                f"cannot reach the orchestrator at {self.base_url}",
                hint=UNREACHABLE_HINT,
            ) from None
        except httpx.TimeoutException:
            raise OrchestratorUnreachableError(
                f"the orchestrator at {self.base_url} did not answer within "
                f"{timeout or self.timeout:g} s",
                hint="see the orchestrator's log",
            ) from None
        except httpx.TransportError as exc:
            raise OrchestratorUnreachableError(
                f"cannot reach the orchestrator at {self.base_url} ({type(exc).__name__})",
                hint=UNREACHABLE_HINT,
            ) from None

    def _answer(self, resp: httpx.Response, path: str) -> Any:
        """The JSON body of a successful answer; else raise the error it carries."""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.is_success and body is not None:
            return body
        if isinstance(body, dict) and "error" in body:
            raise error_from_wire(body["error"])
        raise LiveResponseError(
            f"unexpected answer from {self.base_url}{path}: HTTP {resp.status_code}",
            hint="is LR_API_URL the orchestrator's address?",
        )


def _segment(value: str) -> str:
    """`value` quoted as one path segment, so an id can never reach another route."""
    quoted = quote(value, safe="")
    # "." and ".." survive quoting and would be resolved away as path steps.
    return quoted.replace(".", "%2E") if not quoted.strip(".") else quoted
