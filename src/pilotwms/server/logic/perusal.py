"""Perusal: a look at the standard output of a running job.

A user asks for a peek; the request waits in ``job_commands`` and goes to the pilot holding the
job with its next heartbeat; the pilot answers with a ``peek`` report, whose tail is stored on
the attempt. Jobs with ``PerusalFileEnable = true`` send their tail without being asked. The
last tail stays readable after the job ended.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, select

from pilotwms.core.errors import IllegalTransition
from pilotwms.core.states import ACTIVE, JobKind, JobState
from pilotwms.server.db import attempts, job_commands, utcnow
from pilotwms.server.logic.accounts import Principal
from pilotwms.server.logic.visibility import load_job


def request_peek(
    conn: Connection, job_id: int, principal: Principal, shared_groups: Collection[str]
) -> dict[str, Any]:
    """Ask the pilot running ``job_id`` for its stdout tail; 409 unless a pilot holds it."""
    row = load_job(conn, job_id, principal, shared_groups)
    if row.kind != JobKind.JOB or JobState(row.state) not in ACTIVE:
        raise IllegalTransition(
            job_id, row.state, row.state, "only a job a pilot is running can be peeked at"
        )
    conn.execute(
        job_commands.insert().values(
            job_id=job_id, attempt=row.attempt, command="peek", created_at=utcnow()
        )
    )
    return {"id": job_id, "attempt": row.attempt, "requested": True}


def last_tail(
    conn: Connection, job_id: int, principal: Principal, shared_groups: Collection[str]
) -> dict[str, Any]:
    """The latest stdout tail a pilot sent for the job's current (or last) attempt."""
    row = load_job(conn, job_id, principal, shared_groups)
    tail = conn.execute(
        select(attempts.c.stdout_tail).where(
            attempts.c.job_id == job_id, attempts.c.number == row.attempt
        )
    ).scalar()
    return {"id": job_id, "attempt": row.attempt, "stdout_tail": tail or ""}
