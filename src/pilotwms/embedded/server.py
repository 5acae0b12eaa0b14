"""The WMS server of ``pilotwms up``: uvicorn in a thread of the ``up`` process."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time

from pilotwms.core.settings import ServerSettings

__all__ = ["EmbeddedError", "EmbeddedServer"]

SERVER_START_TIMEOUT_S = 120.0
SERVER_STOP_TIMEOUT_S = 15.0


class EmbeddedError(RuntimeError):
    """``up`` cannot start; the message says why and what to do."""


class EmbeddedServer:
    """The WMS server on uvicorn in a thread of this process, on a socket bound up front (so
    ``--port 0`` knows its port before the server starts and a busy port is a clear error)."""

    def __init__(self, settings: ServerSettings, log_level: str) -> None:
        import uvicorn

        from pilotwms.server.app import Server, create_app

        self.settings = settings
        self.socket = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((settings.host, settings.port))
        except OSError as exc:
            self.socket.close()
            hint = (
                "; give another --port, or --port 0 for a free one"
                if exc.errno == errno.EADDRINUSE
                else ""
            )
            raise EmbeddedError(
                f"cannot listen on {settings.host}:{settings.port}: {exc}{hint}"
            ) from exc
        self.port = int(self.socket.getsockname()[1])
        self.server = Server(
            uvicorn.Config(
                create_app(settings),
                log_level=log_level,
                access_log=False,
                # "on", not "auto": a start-up failure (database, agent build) must stop the
                # server rather than leave it answering without a database.
                lifespan="on",
                timeout_graceful_shutdown=2,
                ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
                ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="server", daemon=True
        )

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.ssl_certfile else "http"
        host = self.settings.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def start(self, stop: threading.Event) -> None:
        """Start and wait until the application has started (database open, agent built)."""
        self.thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive():
                raise EmbeddedError("the server stopped during start-up (see its messages above)")
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                raise EmbeddedError(f"the server did not start within {SERVER_START_TIMEOUT_S}s")
            time.sleep(0.05)

    def stop(self) -> None:
        # The pilots are gone by now, but the server still holds their last long-poll work
        # requests open; uvicorn cancels those after its graceful timeout and logs each one as
        # an error with a traceback. Nothing is lost with them, so that noise is not shown.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self.server.should_exit = True
        self.thread.join(SERVER_STOP_TIMEOUT_S)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(SERVER_STOP_TIMEOUT_S)
        self.socket.close()
