"""Run the app on a real uvicorn in a background thread (tests, benchmarks, notebooks).

A real server on 127.0.0.1 — not an in-process test client — so clients exercise the very HTTP,
SSE and shutdown paths production traffic takes.
"""
from __future__ import annotations

import threading
import time
from typing import Any


class ServerThread:
    """``with ServerThread(app) as srv: srv.base_url`` — uvicorn on an ephemeral port.

    Leaving the block asks uvicorn to shut down gracefully (in-flight requests finish first). An
    app from ``create_app`` runs under its ``ServeConfig``'s connection limits, as with
    ``aligner serve``.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, graceful_timeout: int = 10,
                 startup_timeout: float = 60.0):
        import uvicorn

        state = getattr(getattr(app, "state", None), "aligner", None)
        limits = state.config.uvicorn_options() if state is not None else {}
        self.config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                                     timeout_graceful_shutdown=graceful_timeout, lifespan="on", **limits)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="aligner-uvicorn", daemon=True)
        self.startup_timeout = startup_timeout
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (ends in /v1)."""
        return self.url + "/v1"

    def start(self) -> "ServerThread":
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread exited during startup (see the log above).")
            if time.monotonic() - t0 > self.startup_timeout:
                raise TimeoutError(f"server did not start within {self.startup_timeout}s")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
