"""Pilots: registration, heartbeats (with the commands they carry back), deregistration, listing.

A pilot's state is ``running`` or ``draining`` while it lives, ``lost`` once its lease expired
(it stopped heartbeating; its attempts were requeued) and ``gone`` after it deregistered. A lost
or gone pilot gets 404 on its routes, so an agent that was only cut off registers again and
carries on (``docs/pilot-protocol.md``).

The slot ad arrives as JSON: attribute name to value, with ``{"expr": "..."}`` for expressions
(the pilot's own Requirements and Rank), which :func:`ad_from_json` parses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from pilotwms.classad import ClassAd, ClassAdSyntaxError, parse_expr
from pilotwms.core.errors import BadRequest, PilotNotFound
from pilotwms.server.db import attempts, job_commands, pilots, utcnow

LIVE_STATES = ("running", "draining")
LOST = "lost"
GONE = "gone"

#: Alias kept for readers of the dispatcher: a pilot the server no longer serves.
PilotGone = PilotNotFound


def ad_from_json(raw: Mapping[str, Any]) -> ClassAd:
    """The ClassAd a JSON slot ad describes; ``{"expr": text}`` values are parsed.

    Raises ``BadRequest`` naming the attribute whose expression does not parse.
    """
    ad = ClassAd()
    for name, value in raw.items():
        if isinstance(value, Mapping) and set(value) == {"expr"} and isinstance(value["expr"], str):
            try:
                ad[name] = parse_expr(value["expr"])
            except ClassAdSyntaxError as exc:
                raise BadRequest(f"slot ad attribute {name}: {exc}") from exc
        else:
            try:
                ad[name] = value
            except (TypeError, ValueError) as exc:
                raise BadRequest(f"slot ad attribute {name}: {exc}") from exc
    return ad


def load_pilot_ad(conn: Connection, pilot_id: int) -> ClassAd:
    row = conn.execute(select(pilots.c.ad).where(pilots.c.id == pilot_id)).first()
    if row is None:
        raise PilotNotFound(pilot_id)
    return ad_from_json(row.ad or {})


@dataclass(frozen=True)
class Registration:
    pilot_id: int
    heartbeat_interval_s: float
    lease_timeout_s: float
    poll_wait_s: float


def register(
    conn: Connection,
    *,
    ad: Mapping[str, Any],
    agent_version: str,
    queue: str,
    batch_id: str,
    token_id: str | None,
    lease_s: float,
    now: datetime | None = None,
) -> int:
    """Record a new pilot; returns its id. The ad is checked by parsing it once."""
    ad_from_json(ad)
    now = now or utcnow()
    site = ad.get("Site") or ad.get("GlueSiteName") or ""
    result = conn.execute(
        pilots.insert().values(
            token_id=token_id,
            queue=queue[:256],
            site=str(site)[:256],
            batch_job_id=batch_id[:256],
            version=agent_version[:64],
            ad=dict(ad),
            state="running",
            registered_at=now,
            last_heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def live_pilot(conn: Connection, pilot_id: int, token_id: str | None = None) -> Any:
    """The pilot's row if it is alive (and, given ``token_id``, registered with that token);
    otherwise ``PilotNotFound``, which tells the agent to register again."""
    row = conn.execute(select(pilots).where(pilots.c.id == pilot_id)).first()
    if row is None or row.state not in LIVE_STATES:
        raise PilotNotFound(pilot_id)
    if token_id is not None and row.token_id is not None and row.token_id != token_id:
        raise PilotNotFound(pilot_id)
    return row


@dataclass(frozen=True)
class RunningJob:
    """One attempt a heartbeat lists, with its resource use."""

    job_id: int
    attempt: int
    cpu_s: float | None = None
    rss_mb: float | None = None
    payload_started: bool = False


def heartbeat(
    conn: Connection,
    pilot_id: int,
    *,
    state: str,
    running: Sequence[RunningJob],
    lease_s: float,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Record a heartbeat (the pilot's lease, its attempts' use) and return the commands for
    it: cancels and peeks of its attempts not yet delivered, and a drain asked for since."""
    now = now or utcnow()
    row = conn.execute(
        select(pilots.c.drain_reason, pilots.c.drain_grace_s, pilots.c.drain_sent).where(
            pilots.c.id == pilot_id
        )
    ).one()
    conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id)
        .values(
            state="draining" if state == "draining" else "running",
            last_heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
    )
    for job in running:
        values: dict[str, Any] = {"last_seen_at": now, "pilot_id": pilot_id}
        if job.cpu_s is not None:
            values["cpu_s"] = job.cpu_s
        if job.rss_mb is not None:
            values["rss_mb"] = job.rss_mb
        if job.payload_started:
            values["payload_started"] = True
        conn.execute(
            update(attempts)
            .where(
                attempts.c.job_id == job.job_id,
                attempts.c.number == job.attempt,
                attempts.c.finished_at.is_(None),
            )
            .values(**values)
        )
    commands: list[dict[str, Any]] = []
    pending = conn.execute(
        select(
            job_commands.c.id, job_commands.c.job_id, job_commands.c.attempt, job_commands.c.command
        )
        .join(
            attempts,
            and_(
                attempts.c.job_id == job_commands.c.job_id,
                attempts.c.number == job_commands.c.attempt,
            ),
        )
        .where(job_commands.c.delivered_at.is_(None), attempts.c.pilot_id == pilot_id)
        .order_by(job_commands.c.id)
    ).all()
    if pending:
        for p in pending:
            command: dict[str, Any] = {
                "action": p.command,
                "job_id": str(p.job_id),
                "attempt": p.attempt,
            }
            if p.command == "cancel":
                command["reason"] = "cancelled by the user"
            commands.append(command)
        conn.execute(
            update(job_commands)
            .where(job_commands.c.id.in_([p.id for p in pending]))
            .values(delivered_at=now)
        )
    if row.drain_reason is not None and not row.drain_sent:
        commands.append(
            {"action": "drain", "reason": row.drain_reason, "grace_s": row.drain_grace_s}
        )
        conn.execute(update(pilots).where(pilots.c.id == pilot_id).values(drain_sent=True))
    return commands


def request_drain(conn: Connection, pilot_id: int, reason: str, grace_s: float | None) -> None:
    """Ask a live pilot to drain (delivered with its next heartbeat)."""
    live_pilot(conn, pilot_id)
    conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id)
        .values(drain_reason=reason, drain_grace_s=grace_s, drain_sent=False)
    )


def mark_left(conn: Connection, pilot_id: int, state: str, reason: str) -> None:
    """The pilot deregistered (``gone``) or was declared dead (``lost``)."""
    conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id, pilots.c.state.in_(LIVE_STATES))
        .values(state=state, exit_reason=reason[:1000], lease_expires_at=None)
    )


_LIST_COLUMNS = (
    pilots.c.id,
    pilots.c.queue,
    pilots.c.site,
    pilots.c.batch_job_id,
    pilots.c.version,
    pilots.c.state,
    pilots.c.registered_at,
    pilots.c.last_heartbeat_at,
    pilots.c.lease_expires_at,
    pilots.c.jobs_run,
    pilots.c.exit_reason,
    pilots.c.ad,
)


def pilot_summary(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in _LIST_COLUMNS:
        value = row._mapping[column.name]
        out[column.name] = value.isoformat() if isinstance(value, datetime) else value
    out["id"] = str(row.id)
    return out


def list_pilots(
    conn: Connection,
    *,
    states: Sequence[str] = (),
    ids: Sequence[int] = (),
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Pilots, newest first, with the number of attempts each runs now."""
    stmt = select(*_LIST_COLUMNS).order_by(pilots.c.id.desc()).limit(limit)
    if ids:
        stmt = stmt.where(pilots.c.id.in_(list(ids)))
    if states:
        stmt = stmt.where(pilots.c.state.in_(list(states)))
    rows = conn.execute(stmt).all()
    out = [pilot_summary(r) for r in rows]
    if rows:
        busy = _running_counts(conn, [r.id for r in rows])
        for item, r in zip(out, rows, strict=True):
            item["running_jobs"] = busy.get(r.id, 0)
    return out


def _running_counts(conn: Connection, pilot_ids: Sequence[int]) -> dict[int, int]:
    return {
        int(pid): int(n)
        for pid, n in conn.execute(
            select(attempts.c.pilot_id, func.count())
            .where(attempts.c.pilot_id.in_(list(pilot_ids)), attempts.c.finished_at.is_(None))
            .group_by(attempts.c.pilot_id)
        )
    }


__all__ = [
    "GONE",
    "LIVE_STATES",
    "LOST",
    "PilotGone",
    "Registration",
    "RunningJob",
    "ad_from_json",
    "heartbeat",
    "list_pilots",
    "live_pilot",
    "load_pilot_ad",
    "mark_left",
    "register",
    "request_drain",
]
