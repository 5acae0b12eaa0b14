"""Leases: attempts whose pilot went silent are requeued; a pilot that leaves releases its own.

A pilot renews its lease with every heartbeat. :func:`expire_leases` asks ``retries`` which live
attempts expired (the pilot silent for longer than the lease, or heartbeating without listing
the attempt for that long) and ends each as ``lease_expired``: a shallow retry if the payload
never started, a deep one if it did, ABORTED past the limits. Pilots silent past the lease are
marked ``failed`` ("lease expired"), so their next call gets 404 and they register again.

The server does not blame pilots for its own downtime: times before ``not_before`` (the start
of this server process) count as that moment, so pilots get a full lease after a restart to
come back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, select

from pilotwms.core.states import ACTIVE
from pilotwms.server.db import attempts, jobs, pilot_reports, pilots, utcnow
from pilotwms.server.logic.attempts import (
    Effects,
    RetryCaps,
    end_attempt,
    is_current,
    job_for_update,
    refresh_parents,
)
from pilotwms.server.logic.pilots import FAILED, FINISHED, LIVE_STATES, mark_left
from pilotwms.server.logic.retries import AttemptEnd, EndStatus, LiveAttempt, expired_attempts

_ACTIVE = [s.value for s in ACTIVE]


def _live_attempts(conn: Connection, pilot_id: int | None = None) -> list[Any]:
    stmt = (
        select(
            attempts.c.id,
            attempts.c.job_id,
            attempts.c.number,
            attempts.c.pilot_id,
            attempts.c.started_at,
            attempts.c.last_seen_at,
            attempts.c.payload_started,
            pilots.c.last_heartbeat_at,
        )
        .join(jobs, and_(jobs.c.id == attempts.c.job_id, jobs.c.attempt == attempts.c.number))
        .outerjoin(pilots, pilots.c.id == attempts.c.pilot_id)
        .where(attempts.c.finished_at.is_(None), jobs.c.state.in_(_ACTIVE))
        .order_by(attempts.c.id)
    )
    if pilot_id is not None:
        stmt = stmt.where(attempts.c.pilot_id == pilot_id)
    return list(conn.execute(stmt).all())


def _end_lost(
    conn: Connection,
    job_id: int,
    number: int,
    reason: str,
    *,
    caps: RetryCaps,
    effects: Effects,
    now: datetime,
    status: EndStatus = EndStatus.LEASE_EXPIRED,
) -> bool:
    job = job_for_update(conn, job_id)
    if not is_current(job, number):
        return False
    attempt = conn.execute(
        select(attempts).where(attempts.c.job_id == job_id, attempts.c.number == number)
    ).first()
    if attempt is None or attempt.finished_at is not None:
        return False
    end = AttemptEnd(status, payload_started=attempt.payload_started, reason=reason)
    end_attempt(conn, job, attempt, end, source="server", caps=caps, effects=effects, now=now)
    return True


def expire_leases(
    conn: Connection,
    *,
    lease_s: float,
    caps: RetryCaps,
    effects: Effects,
    not_before: datetime,
    now: datetime | None = None,
) -> list[tuple[int, int]]:
    """End every expired attempt (requeue or abort) and mark silent pilots failed; returns the
    ``(job_id, attempt)`` pairs ended."""
    now = now or utcnow()
    floor = not_before.timestamp()
    rows = _live_attempts(conn)
    live = [
        LiveAttempt(
            job_id=str(r.job_id),
            attempt=r.number,
            pilot_id=str(r.pilot_id),
            handed_out_at=max(r.started_at.timestamp(), floor),
            pilot_last_heartbeat=r.last_heartbeat_at.timestamp() if r.last_heartbeat_at else None,
            last_listed=r.last_seen_at.timestamp() if r.last_seen_at else None,
            payload_started=bool(r.payload_started),
        )
        for r in rows
    ]
    ended: list[tuple[int, int]] = []
    for a in expired_attempts(now.timestamp(), live, lease_s):
        reason = f"pilot {a.pilot_id} lost the job (no heartbeat or report for {lease_s:g} s)"
        if _end_lost(conn, int(a.job_id), a.attempt, reason, caps=caps, effects=effects, now=now):
            ended.append((int(a.job_id), a.attempt))
    refresh_parents(conn, effects)
    deadline = now - timedelta(seconds=lease_s)
    if deadline > not_before:
        silent = conn.execute(
            select(pilots.c.id).where(
                pilots.c.state.in_(LIVE_STATES), pilots.c.last_heartbeat_at < deadline
            )
        ).all()
        for (pilot_id,) in silent:
            why = f"lease expired: no heartbeat for {lease_s:g} s"
            mark_left(conn, pilot_id, FAILED, why, now=now)
    return ended


def release_pilot(
    conn: Connection,
    pilot_id: int,
    reason: str,
    *,
    caps: RetryCaps,
    effects: Effects,
    now: datetime | None = None,
) -> list[tuple[int, int]]:
    """The pilot deregistered: mark it finished and end the attempts it still holds as lost
    (their reports, if any, were sent before); returns the ``(job_id, attempt)`` pairs ended."""
    now = now or utcnow()
    mark_left(conn, pilot_id, FINISHED, reason or "deregistered", now=now)
    return release_attempts(
        conn, pilot_id, reason or "deregistered", caps=caps, effects=effects, now=now
    )


def release_attempts(
    conn: Connection,
    pilot_id: int,
    reason: str,
    *,
    caps: RetryCaps,
    effects: Effects,
    now: datetime | None = None,
    status: EndStatus = EndStatus.LEASE_EXPIRED,
) -> list[tuple[int, int]]:
    """End the attempts an ended pilot still holds: as for a lost lease (a deep retry once
    the payload started), or with ``status`` ``drained`` as a shallow retry (the batch system
    took the pilot away: the pilot failed, not the payload); returns the ``(job_id,
    attempt)`` pairs ended."""
    now = now or utcnow()
    ended: list[tuple[int, int]] = []
    for r in _live_attempts(conn, pilot_id):
        why = f"pilot {pilot_id} left without reporting the job ({reason})"
        if _end_lost(
            conn, r.job_id, r.number, why, caps=caps, effects=effects, now=now, status=status
        ):
            ended.append((r.job_id, r.number))
    refresh_parents(conn, effects)
    return ended


def prune_reports(conn: Connection, *, before: datetime) -> int:
    """Forget the ids of reports received before ``before``; returns how many.

    Remembering ids only matters while a report could still change something: once its
    attempt ended or lost its lease, a copy sent again is refused as stale anyway.
    """
    result = conn.execute(delete(pilot_reports).where(pilot_reports.c.received_at < before))
    return int(result.rowcount or 0)


__all__ = ["expire_leases", "prune_reports", "release_attempts", "release_pilot"]
