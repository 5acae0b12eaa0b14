"""A pilot's own stdout and stderr, as the pilot factory uploads them from the batch system.

Only the tail is kept (``LOG_LIMIT`` bytes): the end of a pilot's log says why it ended. The
logs live in the database (``pilot_logs``), not on one server's disk, so that every replica
serves them. Reading one says when its beginning was cut off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from pilotwms.core.errors import BadRequest, NotFound, PilotNotFound
from pilotwms.server.db import pilot_logs, pilots, utcnow

#: Bytes of a log kept: its last MiB.
LOG_LIMIT = 1 << 20
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class PilotLog:
    content: bytes
    #: Bytes the log had; more than ``len(content)`` when its beginning is not stored.
    total_bytes: int
    truncated: bool
    updated_at: datetime


def check_stream(stream: str) -> str:
    if stream not in STREAMS:
        raise BadRequest(f"stream {stream!r}: a pilot log is 'stdout' or 'stderr'")
    return stream


def store_log(
    conn: Connection,
    pilot_id: int,
    stream: str,
    content: bytes,
    *,
    total_bytes: int | None = None,
    now: datetime | None = None,
) -> PilotLog:
    """Store (or replace) a pilot's log, keeping its last ``LOG_LIMIT`` bytes.

    ``total_bytes``: the size of the whole file when ``content`` is already only its tail.
    """
    check_stream(stream)
    if conn.execute(select(pilots.c.id).where(pilots.c.id == pilot_id)).first() is None:
        raise PilotNotFound(pilot_id)
    total = max(len(content), total_bytes or 0)
    kept = content[-LOG_LIMIT:] if len(content) > LOG_LIMIT else content
    log = PilotLog(kept, total, total > len(kept), now or utcnow())
    values = {
        "content": log.content,
        "total_bytes": log.total_bytes,
        "truncated": log.truncated,
        "updated_at": log.updated_at,
    }
    changed = conn.execute(
        update(pilot_logs)
        .where(pilot_logs.c.pilot_id == pilot_id, pilot_logs.c.stream == stream)
        .values(**values)
    )
    if not changed.rowcount:
        conn.execute(pilot_logs.insert().values(pilot_id=pilot_id, stream=stream, **values))
    return log


def read_log(conn: Connection, pilot_id: int, stream: str) -> PilotLog:
    """The stored log; ``NotFound`` saying so when there is none."""
    check_stream(stream)
    row = conn.execute(
        select(pilot_logs).where(pilot_logs.c.pilot_id == pilot_id, pilot_logs.c.stream == stream)
    ).first()
    if row is None:
        if conn.execute(select(pilots.c.id).where(pilots.c.id == pilot_id)).first() is None:
            raise PilotNotFound(pilot_id)
        raise NotFound(
            f"pilot {pilot_id} has no {stream} log stored: the pilot factory uploads a pilot's "
            "logs from the batch system (a pilot started by hand has none)"
        )
    return PilotLog(bytes(row.content), int(row.total_bytes), bool(row.truncated), row.updated_at)


def truncation_notice(log: PilotLog) -> str:
    """The line put before a log whose beginning is not stored ("" when it is whole)."""
    if not log.truncated:
        return ""
    cut = log.total_bytes - len(log.content)
    return f"[pilotwms: log truncated, its first {cut} of {log.total_bytes} bytes are not stored]\n"


__all__ = [
    "LOG_LIMIT",
    "STREAMS",
    "PilotLog",
    "check_stream",
    "read_log",
    "store_log",
    "truncation_notice",
]
