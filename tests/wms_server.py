"""Helpers shared by the server tests: throw-away databases and a real server in a thread.

Imported by ``tests/conftest.py`` (the fixtures) and by the tests themselves.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

POSTGRES_ENV = "PILOTWMS_TEST_POSTGRES_URL"
DATABASE_KINDS = ["sqlite", "postgres"]
SERVER_START_DEADLINE_S = 60.0


@dataclass(frozen=True)
class ThrowawayDatabase:
    kind: str
    url: str


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        why = f"{POSTGRES_ENV} is not set: PostgreSQL tests need the server 'make test' starts"
        pytest.skip(reason=why + " (as root)")
    return url


@contextlib.contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[ThrowawayDatabase]:
    """A new, empty database of ``kind``; PostgreSQL ones are dropped on exit."""
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield ThrowawayDatabase("sqlite", f"sqlite:///{directory / 'pilotwms.sqlite3'}")
        return
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(postgres_base_url())
    name = f"pilotwms_t_{secrets.token_hex(6)}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ThrowawayDatabase(
            "postgres", base.set(database=name).render_as_string(hide_password=False)
        )
    finally:
        drop_database(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a throw-away database even if a test left connections to it open.

    ``WITH (FORCE)`` ends our own leftover sessions; it is refused when another role's process
    is in the database (an autovacuum worker, whose owner our role may not signal). A plain
    ``DROP DATABASE`` does end autovacuum workers itself, so that is the fallback, retried while
    the worker winds down.
    """
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            pass
        deadline = time.monotonic() + 30
        while True:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@dataclass
class RunningServer:
    """A real server in a thread on a loopback port, and direct access to its database."""

    base_url: str
    settings: Any
    db: Any
    server: Any
    thread: threading.Thread
    verify: Any = True
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=60.0, verify=self.verify, **kwargs
        )
        self._clients.append(client)
        return client

    def add_user(
        self, name: str | None = None, *, group: str | None = None, admin: bool = False
    ) -> str:
        from pilotwms.server.logic.accounts import create_user

        name = name or f"u{secrets.token_hex(4)}"
        with self.db.write() as conn:
            create_user(conn, name, group or f"g-{name}", admin=admin)
        return name

    def token(self, user: str, role: str = "user", lifetime_s: float | None = None) -> str:
        from datetime import timedelta

        from pilotwms.server.logic.accounts import Role, create_token

        with self.db.write() as conn:
            return create_token(
                conn,
                user,
                role=Role(role),
                lifetime=timedelta(seconds=lifetime_s) if lifetime_s is not None else None,
            ).token

    def user_client(self, *, group: str | None = None, admin: bool = False) -> httpx.Client:
        """A client for a new user (admin users get an admin token)."""
        name = self.add_user(group=group, admin=admin)
        return self.client(self.token(name, "admin" if admin else "user"))

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.db.dispose()


def start_server(settings: Any, *, verify: Any = True, port: int = 0) -> RunningServer:
    """Start the app with uvicorn in a thread; return once /api/v1/health answers 200.

    ``port`` 0 picks a free one; a given port lets a test restart a server where its clients
    expect it."""
    import uvicorn

    from pilotwms.server.app import Server, create_app, prepare_database
    from pilotwms.server.db import Database

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )
    server = Server(config)  # releases waiting long polls on a stop, as the real one does
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    scheme = "https" if settings.ssl_certfile else "http"
    base_url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_DEADLINE_S
    last_error: object = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"the server stopped during start-up (last error: {last_error})")
        try:
            response = httpx.get(f"{base_url}/api/v1/health", verify=verify, timeout=5)
            if response.status_code == 200:
                break
            last_error = response.text
        except httpx.TransportError as exc:
            last_error = exc
        time.sleep(0.02)
    else:
        server.should_exit = True
        raise RuntimeError(f"the server did not answer within {SERVER_START_DEADLINE_S}s")
    db = Database(settings.effective_database_url, pool_size=2)
    prepare_database(settings, db)
    return RunningServer(base_url, settings, db, server, thread, verify)


@contextlib.contextmanager
def serving(settings: Any, **kwargs: Any) -> Iterator[RunningServer]:
    """A server started with :func:`start_server`, stopped on leaving the block."""
    running = start_server(settings, **kwargs)
    try:
        yield running
    finally:
        running.stop()


#: Short protocol timings for servers whose pilots are test clients: leases and long polls end
#: within seconds (a module adds its own ``lease_timeout_s``).
PROTOCOL_TIMINGS: dict[str, Any] = {
    "heartbeat_interval_s": 0.5,
    "work_max_wait_s": 2.0,
    "task_queue_resync_s": 1.0,
}


def make_settings(database: ThrowawayDatabase, data_dir: Path, **overrides: Any) -> Any:
    from pilotwms.core.settings import ServerSettings

    values = {"data_dir": data_dir, "database_url": database.url, "log_level": "warning"}
    return ServerSettings(**{**values, **overrides})


def advance(running: RunningServer, job_id: int, *states: str, **kwargs: Any) -> None:
    """Move a job through ``states`` with the lifecycle function, as the pilot protocol would;
    ``kwargs`` (done_code, exit_code, reason) go with the last step."""
    from pilotwms.core.states import DoneCode, JobState
    from pilotwms.server.logic.lifecycle import apply_transition

    if "done_code" in kwargs and kwargs["done_code"] is not None:
        kwargs["done_code"] = DoneCode(kwargs["done_code"])
    with running.db.write() as conn:
        for i, state in enumerate(states):
            extra = kwargs if i == len(states) - 1 else {}
            apply_transition(conn, job_id, JobState(state), source="test", **extra)


def add_output(running: RunningServer, job_id: int, name: str, content: bytes) -> str:
    """Store ``content`` as output file ``name`` of ``job_id`` (what a pilot upload does)."""
    from pilotwms.server.blobstore import FileBlobStore
    from pilotwms.server.logic.output import record_output

    store = FileBlobStore(running.settings.effective_sandbox_dir)
    info = store.put_bytes(content)
    with running.db.write() as conn:
        record_output(conn, job_id, name, info.digest, info.size)
    return info.digest
