"""Run the API with uvicorn: in the foreground (`lr orchestrator serve`) or in a thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from orchestrator.api.app import create_app
from orchestrator.plane import ControlPlane

#: How long a server in a thread has to start listening.
START_TIMEOUT_S = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve(plane: ControlPlane, listener: socket.socket) -> None:
    """Serve the API on the listening socket `listener` until interrupted."""
    app = create_app(plane)
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        app.state.jobs.shutdown()


class ServerThread:
    """The API served from a background thread; `stop()` shuts it down cleanly."""

    def __init__(self, plane: ControlPlane, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.app = create_app(plane)
        config = uvicorn.Config(self.app, host=self.host, port=self.port,
                                log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="lr-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.app.state.jobs.shutdown()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
