"""Pilots: records from submission, registration, heartbeats (with the commands they carry
back), deregistration, batch states, listing.

A pilot's life, as users see it:

* ``submitted``, ``queued``: the pilot factory recorded the batch job
  (:func:`record_submitted`) and the batch system holds it; no agent has registered yet.
* ``running``, ``idle``, ``draining``: the agent registered (adopting the factory's row when
  its queue and batch id match one, :func:`register`) and heartbeats. ``idle`` is not stored:
  it is a ``running`` pilot with no attempt (:func:`shown_state`).
* ``finished`` (it deregistered) and ``failed`` (its lease expired, or its batch job ended
  while it was alive or before it ever registered; ``exit_reason`` says which).

An ended pilot gets 404 on its routes, so an agent that was only cut off registers again and
carries on (``docs/pilot-protocol.md``). A drain (an administrator's, or the rolling upgrade's
when the pilot runs another agent version than the server serves) moves the pilot to
``draining`` at once: from then on its work requests get no job, and the drain command goes
out with its next heartbeat, once.

The slot ad arrives as JSON: attribute name to value, with ``{"expr": "..."}`` for expressions
(the pilot's own Requirements and Rank), which :func:`ad_from_json` parses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    exists,
    func,
    not_,
    or_,
    select,
    update,
)

from pilotwms.classad import ClassAd, ClassAdSyntaxError, parse_expr
from pilotwms.core.errors import BadRequest, PilotNotFound
from pilotwms.server.db import attempts, job_commands, pilot_logs, pilots, utcnow

SUBMITTED = "submitted"
QUEUED = "queued"
RUNNING = "running"
IDLE = "idle"
DRAINING = "draining"
FINISHED = "finished"
FAILED = "failed"

#: Recorded by the factory, no agent registered yet.
UNREGISTERED_STATES = (SUBMITTED, QUEUED)
#: Registered and alive: the pilot routes answer.
LIVE_STATES = (RUNNING, DRAINING)
ENDED_STATES = (FINISHED, FAILED)
#: Every state a user sees (``idle`` is derived from ``running``).
SHOWN_STATES = (SUBMITTED, QUEUED, RUNNING, IDLE, DRAINING, FINISHED, FAILED)

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


def upgrade_reason(old: str, new: str) -> str:
    """The drain reason of the rolling upgrade (the agent and ``pilotwms pilots`` show it)."""
    return f"agent upgrade: {old or 'unknown'} -> {new}"


def record_submitted(
    conn: Connection,
    *,
    queue: str,
    backend: str,
    batch_ids: Sequence[str],
    factory: str = "",
    log_paths: Mapping[str, Mapping[str, str]] | None = None,
    now: datetime | None = None,
) -> list[tuple[int, str]]:
    """Record pilots the factory just submitted (state ``submitted``); returns ``(pilot id,
    batch id)`` pairs in the order given. Their agents adopt these rows when they register.

    Idempotent: a batch id of the queue whose pilot has not ended keeps its row (and id), so a
    factory that sends the same record again after a lost reply creates nothing twice.
    """
    if not queue or len(queue) > 256:
        raise BadRequest("queue: a queue name has 1 to 256 characters")
    if not backend or len(backend) > 64:
        raise BadRequest("backend: a backend name has 1 to 64 characters")
    if not batch_ids:
        raise BadRequest("batch_ids: give the batch ids of the pilots submitted")
    bad = [b for b in batch_ids if not b or len(b) > 256]
    if bad or len(set(batch_ids)) != len(batch_ids):
        raise BadRequest(
            "batch_ids: every batch id must be 1 to 256 characters and appear once"
            + (f" (refused: {bad[:3]!r})" if bad else "")
        )
    paths = log_paths or {}
    for batch_id, given in paths.items():
        if batch_id not in batch_ids:
            raise BadRequest(f"log_paths: {batch_id!r} is not one of the batch_ids")
        if not set(given) <= {"stdout", "stderr"}:
            raise BadRequest(f"log_paths[{batch_id!r}]: only 'stdout' and 'stderr' are known")
    now = now or utcnow()
    known = {
        r.batch_job_id: int(r.id)
        for r in conn.execute(
            select(pilots.c.id, pilots.c.batch_job_id).where(
                pilots.c.queue == queue,
                pilots.c.batch_job_id.in_(list(batch_ids)),
                pilots.c.state.in_(UNREGISTERED_STATES + LIVE_STATES),
            )
        )
    }
    out: list[tuple[int, str]] = []
    for batch_id in batch_ids:
        if batch_id in known:
            out.append((known[batch_id], batch_id))
            continue
        streams = paths.get(batch_id)
        result = conn.execute(
            pilots.insert().values(
                queue=queue,
                batch_job_id=batch_id,
                backend=backend,
                factory=factory[:256] or None,
                log_paths={k: str(v) for k, v in streams.items()} if streams else None,
                state=SUBMITTED,
                submitted_at=now,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        out.append((int(pk[0]), batch_id))
    return out


def register(
    conn: Connection,
    *,
    ad: Mapping[str, Any],
    agent_version: str,
    queue: str,
    batch_id: str,
    token_id: str | None,
    lease_s: float,
    current_version: str | None = None,
    now: datetime | None = None,
) -> int:
    """Record a registering pilot; returns its id. The ad is checked by parsing it once.

    The factory's row for the same queue and batch id, while not yet registered, is adopted
    (same id); otherwise a new row is made. With ``current_version`` (the agent the server
    serves), a pilot of another version registers already draining (the rolling upgrade).
    """
    ad_from_json(ad)
    now = now or utcnow()
    site = ad.get("Site") or ad.get("GlueSiteName") or ""
    version = agent_version[:64]
    values: dict[str, Any] = {
        "token_id": token_id,
        "site": str(site)[:256],
        "version": version,
        "ad": dict(ad),
        "state": RUNNING,
        "registered_at": now,
        "last_heartbeat_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_s),
    }
    if current_version and version != current_version:
        values.update(
            state=DRAINING,
            drain_reason=upgrade_reason(version, current_version),
            drain_grace_s=None,
            drain_sent=False,
        )
    if batch_id:
        row = conn.execute(
            select(pilots.c.id)
            .where(
                pilots.c.queue == queue[:256],
                pilots.c.batch_job_id == batch_id[:256],
                pilots.c.state.in_(UNREGISTERED_STATES),
            )
            .order_by(pilots.c.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            adopted = conn.execute(
                update(pilots)
                .where(pilots.c.id == row.id, pilots.c.state.in_(UNREGISTERED_STATES))
                .values(**values)
            )
            if adopted.rowcount:
                return int(row.id)
    result = conn.execute(
        pilots.insert().values(queue=queue[:256], batch_job_id=batch_id[:256], **values)
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def live_pilot(conn: Connection, pilot_id: int, token_id: str | None = None) -> Any:
    """The pilot's id, state and token if it is alive (and, given ``token_id``, registered
    with that token); otherwise ``PilotNotFound``, which tells the agent to register again.

    Every report batch and heartbeat asks, so the statement is built once and reads no more
    than the check needs (not the slot ad)."""
    row = conn.execute(_LIVE, {"id": pilot_id}).first()
    if row is None or row.state not in LIVE_STATES:
        raise PilotNotFound(pilot_id)
    if token_id is not None and row.token_id is not None and row.token_id != token_id:
        raise PilotNotFound(pilot_id)
    return row


_LIVE = select(pilots.c.id, pilots.c.state, pilots.c.token_id).where(pilots.c.id == bindparam("id"))


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
    current_version: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Record a heartbeat (the pilot's lease, its attempts' use) and return the commands for
    it: cancels and peeks of its attempts not yet delivered, and a drain asked for since.

    With ``current_version`` (the agent the server serves), a pilot of another version is
    drained (grace none: its jobs run to their end) unless a drain is on its way already.
    A pilot once draining stays draining, whatever its heartbeat says.
    """
    now = now or utcnow()
    row = conn.execute(
        select(
            pilots.c.state,
            pilots.c.version,
            pilots.c.drain_reason,
            pilots.c.drain_grace_s,
            pilots.c.drain_sent,
        ).where(pilots.c.id == pilot_id)
    ).one()
    drain_reason, drain_grace, drain_sent = row.drain_reason, row.drain_grace_s, row.drain_sent
    values: dict[str, Any] = {
        "state": DRAINING if DRAINING in (state, row.state) else RUNNING,
        "last_heartbeat_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_s),
    }
    if current_version and row.version != current_version and drain_reason is None:
        drain_reason, drain_grace, drain_sent = (
            upgrade_reason(row.version or "", current_version),
            None,
            False,
        )
        values.update(
            state=DRAINING, drain_reason=drain_reason, drain_grace_s=None, drain_sent=False
        )
    conn.execute(update(pilots).where(pilots.c.id == pilot_id).values(**values))
    for job in running:
        job_values: dict[str, Any] = {"last_seen_at": now, "pilot_id": pilot_id}
        if job.cpu_s is not None:
            job_values["cpu_s"] = job.cpu_s
        if job.rss_mb is not None:
            job_values["rss_mb"] = job.rss_mb
        if job.payload_started:
            job_values["payload_started"] = True
        conn.execute(
            update(attempts)
            .where(
                attempts.c.job_id == job.job_id,
                attempts.c.number == job.attempt,
                attempts.c.finished_at.is_(None),
            )
            .values(**job_values)
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
    if drain_reason is not None and not drain_sent:
        commands.append({"action": "drain", "reason": drain_reason, "grace_s": drain_grace})
        conn.execute(update(pilots).where(pilots.c.id == pilot_id).values(drain_sent=True))
    return commands


def request_drain(conn: Connection, pilot_id: int, reason: str, grace_s: float | None) -> None:
    """Ask a live pilot to drain: it gets no more work from now on, and the command goes out
    with its next heartbeat."""
    live_pilot(conn, pilot_id)
    conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id)
        .values(state=DRAINING, drain_reason=reason, drain_grace_s=grace_s, drain_sent=False)
    )


def mark_left(
    conn: Connection, pilot_id: int, state: str, reason: str, *, now: datetime | None = None
) -> bool:
    """The pilot deregistered (``finished``) or was declared dead (``failed``); False when it
    was not alive any more."""
    result = conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id, pilots.c.state.in_(LIVE_STATES))
        .values(
            state=state, exit_reason=reason[:1000], lease_expires_at=None, ended_at=now or utcnow()
        )
    )
    return bool(result.rowcount)


#: Batch states the factory reports (``factory.backends.base.BatchState`` values).
BATCH_STATES = ("queued", "running", "finished", "failed", "cancelled")
_BATCH_ENDED = ("finished", "failed", "cancelled")


@dataclass(frozen=True)
class BatchChange:
    """One pilot's batch state as the factory saw it."""

    batch_id: str
    state: str
    reason: str = ""


def _batch_words(change: BatchChange) -> str:
    return change.state + (f": {change.reason}" if change.reason else "")


def apply_batch_states(
    conn: Connection, queue: str, changes: Sequence[BatchChange], *, now: datetime | None = None
) -> tuple[int, list[tuple[int, str]]]:
    """Apply the batch states the factory saw for pilots of ``queue``.

    Returns how many rows changed and, for each live pilot whose batch job ended, its id and
    that batch state (its attempts still need releasing, see ``leases.release_attempts``).

    A pilot not registered yet moves from ``submitted`` to ``queued``; when its batch job ended
    it is ``failed`` (``finished`` if the factory cancelled it), with the batch system's reason.
    A registered pilot whose batch job ended without deregistering is ``failed`` at once: the
    server need not wait for its lease.
    """
    now = now or utcnow()
    for change in changes:
        if change.state not in BATCH_STATES:
            raise BadRequest(
                f"pilots[{change.batch_id!r}].state {change.state!r}: "
                f"one of {', '.join(BATCH_STATES)}"
            )
    updated = 0
    ended_live: list[tuple[int, str]] = []
    if not changes:
        return updated, ended_live
    # One read for all the changes; ``state`` follows the updates below, so that a batch id
    # given twice sees what the first change did.
    by_batch_id: dict[str, list[int]] = {}
    state: dict[int, str] = {}
    for found in conn.execute(
        select(pilots.c.id, pilots.c.state, pilots.c.batch_job_id).where(
            pilots.c.queue == queue,
            pilots.c.batch_job_id.in_([c.batch_id for c in changes]),
            pilots.c.state.in_(UNREGISTERED_STATES + LIVE_STATES),
        )
    ):
        by_batch_id.setdefault(found.batch_job_id, []).append(int(found.id))
        state[int(found.id)] = found.state
    for change in changes:
        for pilot_id in by_batch_id.get(change.batch_id, ()):
            current = state[pilot_id]
            if current in UNREGISTERED_STATES:
                if change.state in _BATCH_ENDED:
                    cancelled = change.state == "cancelled"
                    reason = (
                        f"cancelled before registering: {_batch_words(change)}"
                        if cancelled
                        else f"pilot ended without registering: {_batch_words(change)}"
                    )
                    values: dict[str, Any] = {
                        "state": FINISHED if cancelled else FAILED,
                        "exit_reason": reason[:1000],
                        "ended_at": now,
                    }
                elif current == SUBMITTED:
                    values = {"state": QUEUED}
                else:
                    continue
                result = conn.execute(
                    update(pilots)
                    .where(pilots.c.id == pilot_id, pilots.c.state == current)
                    .values(**values)
                )
                if result.rowcount:
                    updated += 1
                    state[pilot_id] = values["state"]
            elif current in LIVE_STATES and change.state in _BATCH_ENDED:
                why = f"batch job ended: {_batch_words(change)}"
                if mark_left(conn, pilot_id, FAILED, why, now=now):
                    updated += 1
                    state[pilot_id] = FAILED
                    ended_live.append((pilot_id, change.state))
    return updated, ended_live


_LIST_COLUMNS = (
    pilots.c.id,
    pilots.c.queue,
    pilots.c.site,
    pilots.c.backend,
    pilots.c.factory,
    pilots.c.batch_job_id,
    pilots.c.version,
    pilots.c.state,
    pilots.c.submitted_at,
    pilots.c.registered_at,
    pilots.c.last_heartbeat_at,
    pilots.c.lease_expires_at,
    pilots.c.ended_at,
    pilots.c.jobs_run,
    pilots.c.exit_reason,
    pilots.c.drain_reason,
    pilots.c.ad,
)


def shown_state(stored: str, running_jobs: int) -> str:
    """The state users see: ``idle`` is a ``running`` pilot with no attempt."""
    return IDLE if stored == RUNNING and running_jobs == 0 else stored


def pilot_summary(row: Any, running_jobs: int = 0, logs: Sequence[str] = ()) -> dict[str, Any]:
    """A pilot as ``GET /api/v1/pilots`` lists it."""
    out: dict[str, Any] = {}
    for column in _LIST_COLUMNS:
        value = row._mapping[column.name]
        out[column.name] = value.isoformat() if isinstance(value, datetime) else value
    out["id"] = str(row.id)
    out["batch_id"] = row.batch_job_id or ""
    out["state"] = shown_state(row.state, running_jobs)
    out["reason"] = row.exit_reason if row.state in ENDED_STATES else row.drain_reason
    out["running_jobs"] = running_jobs
    out["logs"] = sorted(logs)
    out["has_log"] = bool(logs)
    return out


def _has_attempt() -> ColumnElement[bool]:
    return exists().where(attempts.c.pilot_id == pilots.c.id, attempts.c.finished_at.is_(None))


def state_filter(states: Sequence[str]) -> ColumnElement[bool]:
    """The SQL condition for pilots shown in any of ``states`` (``idle`` and ``running`` tell
    stored ``running`` pilots apart by their attempts)."""
    unknown = sorted(set(states) - set(SHOWN_STATES))
    if unknown:
        raise BadRequest(
            f"pilot state {', '.join(unknown)} is unknown; use {', '.join(SHOWN_STATES)}"
        )
    stored = [s for s in states if s not in (RUNNING, IDLE)]
    parts: list[ColumnElement[bool]] = [pilots.c.state.in_(stored)] if stored else []
    if RUNNING in states and IDLE in states:
        parts.append(pilots.c.state == RUNNING)
    elif RUNNING in states:
        parts.append(and_(pilots.c.state == RUNNING, _has_attempt()))
    elif IDLE in states:
        parts.append(and_(pilots.c.state == RUNNING, not_(_has_attempt())))
    return or_(*parts)


def list_pilots(
    conn: Connection,
    *,
    states: Sequence[str] = (),
    ids: Sequence[int] = (),
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Pilots, newest first, with the number of attempts each runs now and its stored logs."""
    stmt = select(*_LIST_COLUMNS).order_by(pilots.c.id.desc()).limit(limit)
    if ids:
        stmt = stmt.where(pilots.c.id.in_(list(ids)))
    if states:
        stmt = stmt.where(state_filter(states))
    rows = conn.execute(stmt).all()
    if not rows:
        return []
    pilot_ids = [r.id for r in rows]
    busy = running_counts(conn, pilot_ids)
    logs: dict[int, list[str]] = {}
    for pid, stream in conn.execute(
        select(pilot_logs.c.pilot_id, pilot_logs.c.stream).where(
            pilot_logs.c.pilot_id.in_(pilot_ids)
        )
    ):
        logs.setdefault(int(pid), []).append(stream)
    return [pilot_summary(r, busy.get(r.id, 0), logs.get(r.id, ())) for r in rows]


def running_counts(conn: Connection, pilot_ids: Sequence[int]) -> dict[int, int]:
    """Attempts each of these pilots holds now (handed out, not ended)."""
    return {
        int(pid): int(n)
        for pid, n in conn.execute(
            select(attempts.c.pilot_id, func.count())
            .where(attempts.c.pilot_id.in_(list(pilot_ids)), attempts.c.finished_at.is_(None))
            .group_by(attempts.c.pilot_id)
        )
    }


__all__ = [
    "DRAINING",
    "ENDED_STATES",
    "FAILED",
    "FINISHED",
    "IDLE",
    "LIVE_STATES",
    "QUEUED",
    "RUNNING",
    "SHOWN_STATES",
    "SUBMITTED",
    "UNREGISTERED_STATES",
    "BatchChange",
    "PilotGone",
    "Registration",
    "RunningJob",
    "ad_from_json",
    "apply_batch_states",
    "heartbeat",
    "list_pilots",
    "live_pilot",
    "load_pilot_ad",
    "mark_left",
    "record_submitted",
    "register",
    "request_drain",
    "running_counts",
    "shown_state",
    "state_filter",
    "upgrade_reason",
]
