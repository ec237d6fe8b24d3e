"""A small HTTP client of the orchestrator's API; errors come back as our exception classes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from orchestrator.cli.errors import OrchestratorUnreachableError, error_from_wire
from tasks.errors import AuthenticationError, ConfigurationError, LiveResponseError

#: Seconds an ordinary API call may take.
DEFAULT_TIMEOUT_S = 30.0
#: Seconds a command may take: the API answers only once the agent did (expiry + time limit).
RUN_TIMEOUT_S = 180.0
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
        """The caller's user name and roles."""
        return self._call("GET", "/whoami")

    def devices(self) -> list[dict[str, Any]]:
        """Every registered device."""
        return self._call("GET", "/devices")

    def open_session(self, device: str) -> dict[str, Any]:
        """Open a session on `device`; the session object (with its `id`)."""
        return self._call("POST", "/sessions", json={"device_id": device})

    def get_session(self, session_id: str) -> dict[str, Any]:
        """One session as it stands now."""
        return self._call("GET", f"/sessions/{_segment(session_id)}")

    def list_sessions(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        """Open sessions, or every session when `all`."""
        return self._call("GET", "/sessions", params={"all": "true" if all else "false"})

    def close_session(self, session_id: str) -> dict[str, Any]:
        """Close a session; the closed session."""
        return self._call("DELETE", f"/sessions/{_segment(session_id)}")

    def run(self, session_id: str, line: str) -> dict[str, Any]:
        """Run a command line in a session and wait for its record (any final status)."""
        return self._call(
            "POST",
            f"/sessions/{_segment(session_id)}/commands",
            json={"line": line},
            timeout=self.run_timeout_s,
        )

    def get_command(self, command_id: str) -> dict[str, Any]:
        """One command's record."""
        return self._call("GET", f"/commands/{_segment(command_id)}")

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit entries matching session, device, actor, command, since, until, limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/audit", params=params)

    def audit_verify(self) -> dict[str, Any]:
        """The verifier's verdict on the whole audit chain."""
        return self._call("GET", "/audit/verify")

    def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """Send one request; return its JSON or raise the error it carries."""
        try:
            resp = self._http.request(method, path, timeout=timeout or self.timeout, **kwargs)
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
