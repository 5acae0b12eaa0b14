"""The engine factory and the two ways to open a transaction (read, write).

SQLite is the embedded default: WAL so readers never block the writer, a busy timeout so
concurrent writers queue instead of failing, foreign keys on. Write transactions start with
``BEGIN IMMEDIATE``: taking the write lock up front means a transaction never has to upgrade a
read snapshot to a write, which is where SQLite answers "database is locked" at once, whatever the
busy timeout. PostgreSQL goes through psycopg 3 with a pre-ping, so connections broken by a
database restart are replaced instead of failing a request.

SQLite runs with ``synchronous=NORMAL``: in WAL mode a commit is then written to the log but
not flushed to the disk; the log is flushed at checkpoints. That is safe against a crash of the
server process (the operating system has the data) and never corrupts the database; only a
power loss or kernel crash can undo the last commits. ``FULL`` would cost one flush per commit,
milliseconds on ordinary disks, and every hand-out and report batch commits. For a WMS the
loss is bounded to the last moments before the power went: jobs handed out then may be handed
out again (and so run twice), reports applied then are lost with the pilots' copies already
dropped, and submissions acknowledged then are gone. A site that cannot accept that runs the
server on PostgreSQL, whose commits are durable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

_WRITE = "pilotwms_write"


class Database:
    """The engine plus transaction helpers; one per server process."""

    def __init__(self, url: str, *, pool_size: int = 10, busy_timeout_ms: int = 10_000) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, busy_timeout_ms=busy_timeout_ms)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction for queries (a consistent snapshot, no write lock)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that writes; committed on success, rolled back on error."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str, *, pool_size: int = 10, busy_timeout_ms: int = 10_000) -> Engine:
    """An engine for ``url`` configured for how the server uses it (see the module docstring)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=pool_size,
            max_overflow=2 * pool_size,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": pool_size, "max_overflow": 10}
    kwargs["connect_args"] = {"connect_timeout": 5}
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite's implicit BEGIN is
        # deferred and emitted only before DML, which breaks read snapshots).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
