"""Expiry of jobs that waited too long (gLite's ExpiryTime and WM ExpiryPeriod).

Submission stores the effective deadline of every job in ``expiry_time``: the JDL's
``ExpiryTime`` if given, else submission time plus the configured expiry period. A job still
WAITING past it is ABORTED with the reason "request expired". ``is_expired`` is the rule, the
query only narrows the candidates by index.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from pilotwms.core.states import JobState
from pilotwms.server.db import jobs, utcnow
from pilotwms.server.logic.lifecycle import apply_transitions

EXPIRED_REASON = "request expired"
_BATCH = 5000


def effective_expiry(
    submitted_at: datetime, jdl_expiry: datetime | None, period: timedelta | None
) -> datetime | None:
    """The deadline of a job: its own ExpiryTime, else submission + period (``None``: never)."""
    if jdl_expiry is not None:
        return jdl_expiry
    if period is None or period <= timedelta(0):
        return None
    return submitted_at + period


def is_expired(state: JobState, expiry_time: datetime | None, now: datetime) -> bool:
    """Only a job still waiting for a pilot expires; one that started is past the point."""
    return state == JobState.WAITING and expiry_time is not None and expiry_time <= now


def expire_jobs(conn: Connection, *, now: datetime | None = None) -> list[int]:
    """Abort every expired job (at most one batch per call); return their ids."""
    now = now or utcnow()
    rows = conn.execute(
        select(jobs.c.id, jobs.c.state, jobs.c.expiry_time)
        .where(jobs.c.state == JobState.WAITING.value, jobs.c.expiry_time <= now)
        .order_by(jobs.c.id)
        .limit(_BATCH)
    ).all()
    ids = [r.id for r in rows if is_expired(JobState(r.state), r.expiry_time, now)]
    if not ids:
        return []
    return apply_transitions(
        conn, ids, JobState.ABORTED, source="expiry", reason=EXPIRED_REASON, now=now
    )
