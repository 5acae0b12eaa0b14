"""The one place where job states change.

``apply_transition`` (one job) and ``apply_transitions`` (many jobs, one statement per source
state) check every change against ``pilotwms.core.states.TRANSITIONS``, refuse an illegal one
with ``IllegalTransition`` naming the job, both states and the cause, update the row with a
compare-and-set on the old state (so two concurrent writers cannot both move a job), write the
event row that ``logging-info`` shows, and re-derive the state of the compound job the node
belongs to.

A path of steps (``via``: transitions, and events that change no state) is checked and
recorded step by step but written as one update: a short job whose start, payload start and
end a pilot reports together goes READY -> DONE in one statement with the history of three.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Update, bindparam, exists, func, select, update

from pilotwms.core.errors import IllegalTransition, JobNotFound
from pilotwms.core.states import (
    COLLECTION_EVENT,
    FINISHED,
    REGISTER_EVENT,
    DoneCode,
    JobState,
    derive_parent_state,
    transition_event,
    why_illegal,
)
from pilotwms.server.db import job_events, jobs, utcnow
from pilotwms.server.db.bulk import insert_rows

S = JobState

#: Bound parameters per statement stay below SQLite's default limit (32766) and keep
#: PostgreSQL's plans sane.
_CHUNK = 5000


def apply_transition(
    conn: Connection,
    job_id: int,
    to: JobState,
    *,
    source: str,
    reason: str | None = None,
    attempt: int | None = None,
    done_code: DoneCode | None = None,
    exit_code: int | None = None,
    now: datetime | None = None,
) -> JobState:
    """Move one job to ``to``; return the state it left. Raises ``JobNotFound`` or
    ``IllegalTransition``."""
    row = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).first()
    if row is None:
        raise JobNotFound(job_id)
    from_ = S(row.state)
    if transition_event(from_, to) is None:
        raise IllegalTransition(job_id, from_, to, why_illegal(from_, to))
    moved = apply_transitions(
        conn,
        [job_id],
        to,
        source=source,
        reason=reason,
        attempt=attempt,
        done_code=done_code,
        exit_code=exit_code,
        now=now,
    )
    if not moved:
        current = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one()
        raise IllegalTransition(job_id, from_, to, f"the job changed to {current} concurrently")
    return from_


@dataclass(frozen=True)
class Move:
    """A transition taken on the way to the target of :func:`apply_transitions` (``via``)."""

    to: JobState
    reason: str | None = None


@dataclass(frozen=True)
class Note:
    """An event recorded on the way (``via``) without changing the state, as
    :func:`record_event` records one: its row shows the state reached so far."""

    event: str
    reason: str | None = None


def apply_transitions(
    conn: Connection,
    job_ids: Sequence[int],
    to: JobState,
    *,
    source: str,
    reason: str | None = None,
    attempt: int | None = None,
    done_code: DoneCode | None = None,
    exit_code: int | None = None,
    now: datetime | None = None,
    refresh_parents: bool = True,
    via: Sequence[Move | Note] = (),
    from_state: JobState | None = None,
) -> list[int]:
    """Move every job of ``job_ids`` whose current state allows it to ``to``.

    Jobs the table does not allow to move are left alone (a bulk cancel skips finished nodes);
    the ids of the jobs moved are returned.

    ``via`` are steps taken first, in the same update: each :class:`Move` is checked against
    the table from the state reached so far, and every step writes the event it would write
    alone (a :class:`Note` the event of :func:`record_event`). The row ends as the steps one
    after the other would leave it, so a short job whose start and end arrive together is
    one update, not two, with the same history.

    ``from_state``: the state the caller found all these jobs in, in this transaction (rows
    it read, locked on PostgreSQL). Their states are then not read again: the compare-and-set
    update alone moves them, and leaves alone any that is no longer in that state.
    """
    now = now or utcnow()
    returning = bool(conn.dialect.update_returning)
    by_state: dict[JobState, list[int]] = defaultdict(list)
    parents: set[int] = set()
    if from_state is not None and returning:
        by_state[from_state] = list(job_ids)
    else:
        for chunk in _chunks(job_ids):
            rows = conn.execute(_STATES_OF, {"ids": list(chunk)})
            for row in rows:
                by_state[S(row.state)].append(row.id)
                if row.parent_id is not None:
                    parents.add(row.parent_id)
    moved: list[int] = []
    events: list[tuple[Any, ...]] = []
    values: dict[str, Any] = {}
    for step in via:
        if isinstance(step, Move):
            values.update(_row_values(step.to, step.reason, None, None, now))
    values.update(_row_values(to, reason, done_code, exit_code, now))
    path = (*via, Move(to, reason))
    starts = any(isinstance(step, Move) and step.to == S.RUNNING for step in path)
    stmt = _move_statement(tuple(values), starts, returning)
    params = {f"v_{name}": value for name, value in values.items()}
    for from_, ids in by_state.items():
        chain = _chain(from_, path)
        if chain is None:
            continue
        for chunk in _chunks(ids):
            bound = {**params, "ids": list(chunk), "from_state": from_.value}
            if returning:
                done = []
                for row in conn.execute(stmt, bound):
                    done.append(row.id)
                    if from_state is not None and row.parent_id is not None:
                        parents.add(row.parent_id)
            else:
                conn.execute(stmt, bound)
                done = list(chunk)
            moved.extend(done)
            for event, state_from, state_to, why in chain:
                events.extend(
                    (job_id, now, event, state_from, state_to, source, why, attempt)
                    for job_id in done
                )
    insert_rows(conn, job_events, EVENT_COLUMNS, events)
    if refresh_parents and moved:
        for parent_id in sorted(parents):
            refresh_parent(conn, parent_id, source=source, now=now)
    return moved


def _chain(
    from_: JobState, path: Sequence[Move | Note]
) -> list[tuple[str, str, str, str | None]] | None:
    """The events ``(event, from, to, reason)`` of ``path`` taken from ``from_``; None when
    the table forbids one of its moves."""
    chain: list[tuple[str, str, str, str | None]] = []
    state = from_
    for step in path:
        if isinstance(step, Note):
            chain.append((step.event, state.value, state.value, step.reason))
            continue
        event = transition_event(state, step.to)
        if event is None:
            return None
        chain.append((event, state.value, step.to.value, step.reason))
        state = step.to
    return chain


def registration_events(
    job_ids: Iterable[int],
    states: Iterable[JobState],
    *,
    source: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """Event rows for jobs just inserted: ``RegJob`` into SUBMITTED, then ``Accepted`` for those
    inserted directly as WAITING (submission writes the final state in one insert)."""
    accepted = transition_event(S.SUBMITTED, S.WAITING)
    assert accepted is not None
    rows: list[dict[str, Any]] = []
    for job_id, state in zip(job_ids, states, strict=True):
        rows.append(
            {
                "job_id": job_id,
                "time": now,
                "event": REGISTER_EVENT,
                "state_from": None,
                "state_to": S.SUBMITTED.value,
                "source": source,
                "reason": None,
                "attempt": None,
            }
        )
        if state == S.WAITING:
            rows.append(
                {
                    "job_id": job_id,
                    "time": now,
                    "event": accepted,
                    "state_from": S.SUBMITTED.value,
                    "state_to": S.WAITING.value,
                    "source": source,
                    "reason": None,
                    "attempt": None,
                }
            )
    return rows


def refresh_parent(
    conn: Connection, parent_id: int, *, source: str = "server", now: datetime | None = None
) -> JobState:
    """Re-derive a compound job's state from its nodes; record a ``CollectionState`` event when
    it changes. Returns the (possibly unchanged) state."""
    now = now or utcnow()
    current = conn.execute(_PARENT_STATE, {"parent_id": parent_id}).first()
    if current is None:
        raise JobNotFound(parent_id)
    if current.done_code is None and _unchanged(conn, parent_id, S(current.state)):
        return S(current.state)
    # Counted from the (parent_id, state) index alone; the failed nodes are counted (from
    # the rows) only when every node finished, the one case where they matter.
    rows = conn.execute(_NODE_COUNTS, {"parent_id": parent_id}).all()
    counts = {S(state): n for state, n in rows}
    failed_done = 0
    if sum(n for s, n in counts.items() if s in FINISHED) == sum(counts.values()):
        failed_done = int(conn.execute(_FAILED_DONE, {"parent_id": parent_id}).scalar_one())
    state, done_code = derive_parent_state(counts, failed_done)
    new_code = done_code.value if done_code else None
    if current.state == state.value and current.done_code == new_code:
        return state
    values: dict[str, Any] = {"state": state.value, "done_code": new_code, "updated_at": now}
    if state in FINISHED:
        values["finished_at"] = now
    stmt = _parent_update(tuple(values), state == S.RUNNING)
    conn.execute(stmt, {"parent": parent_id, **{f"v_{k}": v for k, v in values.items()}})
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    event = (parent_id, now, COLLECTION_EVENT, current.state, state.value, source)
    insert_rows(conn, job_events, EVENT_COLUMNS, [(*event, f"nodes: {summary}", None)])
    return state


#: The states that decide an unfinished compound job's state, first present wins
#: (``derive_parent_state``).
_IN_PROGRESS = (S.RUNNING, S.SCHEDULED, S.READY, S.WAITING)


def _unchanged(conn: Connection, parent_id: int, current: JobState) -> bool:
    """Whether the compound job certainly keeps ``current``: some node is in a state of
    ``_IN_PROGRESS`` and the first such state is ``current``. One index probe per state
    (``ix_jobs_parent_id_state``), so the nodes of a 100,000-node job are not counted after
    every hand-out and report batch; the full count runs only when the state may change."""
    if current not in _IN_PROGRESS:
        return False
    present = conn.execute(_PROBES, {"parent_id": parent_id}).one()
    for state, there in zip(_IN_PROGRESS, present, strict=True):
        if there:
            return state == current
    return False


#: The hot statements, built once: building an expression and its cache key for every batch
#: cost more than running it.
_STATES_OF = select(jobs.c.id, jobs.c.state, jobs.c.parent_id).where(
    jobs.c.id.in_(bindparam("ids", expanding=True))
)
_CURRENT_STATES = select(jobs.c.id, jobs.c.state).where(
    jobs.c.id.in_(bindparam("ids", expanding=True))
)
#: The columns of an event row as :func:`apply_transitions` and :func:`record_event` write
#: them, through ``bulk.insert_rows``: a batch's events are hundreds of rows, and SQLAlchemy's
#: per-row parameter processing cost more than the insert.
EVENT_COLUMNS = (
    "job_id",
    "time",
    "event",
    "state_from",
    "state_to",
    "source",
    "reason",
    "attempt",
)
#: :func:`refresh_parent` runs after every hand-out and report batch that moved a node.
_PARENT_STATE = select(jobs.c.state, jobs.c.done_code).where(jobs.c.id == bindparam("parent_id"))
_NODE_COUNTS = (
    select(jobs.c.state, func.count())
    .where(jobs.c.parent_id == bindparam("parent_id"))
    .group_by(jobs.c.state)
)
_FAILED_DONE = select(func.count()).where(
    jobs.c.parent_id == bindparam("parent_id"),
    jobs.c.state.in_([S.DONE.value, S.CLEARED.value]),
    (jobs.c.done_code != DoneCode.OK.value) | (func.coalesce(jobs.c.exit_code, 0) != 0),
)
_PROBES = select(
    *(
        exists().where(jobs.c.parent_id == bindparam("parent_id"), jobs.c.state == state.value)
        for state in _IN_PROGRESS
    )
)


@functools.lru_cache(maxsize=64)
def _move_statement(columns: tuple[str, ...], starts: bool, returning: bool) -> Update:
    """The compare-and-set update of :func:`apply_transitions` for one set of written columns
    (``v_<column>`` parameters, with ``ids`` and ``from_state``); ``starts`` also sets
    ``started_at`` once (from ``v_updated_at``)."""
    stmt = (
        update(jobs)
        .where(
            jobs.c.id.in_(bindparam("ids", expanding=True)),
            jobs.c.state == bindparam("from_state"),
        )
        .values({name: bindparam(f"v_{name}", type_=jobs.c[name].type) for name in columns})
    )
    if starts:
        now = bindparam("v_updated_at", type_=jobs.c.updated_at.type)
        stmt = stmt.values(started_at=func.coalesce(jobs.c.started_at, now))
    return stmt.returning(jobs.c.id, jobs.c.parent_id) if returning else stmt


@functools.lru_cache(maxsize=16)
def _parent_update(columns: tuple[str, ...], starts: bool) -> Update:
    """The update of :func:`refresh_parent` for one set of written columns (``v_<column>``
    parameters and ``parent``); ``starts`` also sets ``started_at`` once."""
    stmt = (
        update(jobs)
        .where(jobs.c.id == bindparam("parent"))
        .values({name: bindparam(f"v_{name}", type_=jobs.c[name].type) for name in columns})
    )
    if starts:
        now = bindparam("v_updated_at", type_=jobs.c.updated_at.type)
        stmt = stmt.values(started_at=func.coalesce(jobs.c.started_at, now))
    return stmt


def _row_values(
    to: JobState,
    reason: str | None,
    done_code: DoneCode | None,
    exit_code: int | None,
    now: datetime,
) -> dict[str, Any]:
    values: dict[str, Any] = {"state": to.value, "updated_at": now}
    if to in FINISHED and to != S.PURGED:
        values["finished_at"] = now
    if reason is not None:
        values["reason"] = reason
    if done_code is not None:
        values["done_code"] = done_code.value
    if exit_code is not None:
        values["exit_code"] = exit_code
    if to == S.WAITING:
        # A requeued job waits again; the last attempt's verdict is in the events and attempts.
        values["done_code"] = None
    return values


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def record_event(
    conn: Connection,
    job_ids: Sequence[int],
    event: str,
    *,
    source: str,
    reason: str | None = None,
    attempt: int | None = None,
    now: datetime | None = None,
) -> None:
    """Record an event that does not change the state (a cancel request, a purge of data).

    gLite logs such events too (Resubmission, Purge); the row shows the unchanged state.
    """
    now = now or utcnow()
    rows: list[tuple[Any, ...]] = []
    for chunk in _chunks(job_ids):
        for row in conn.execute(_CURRENT_STATES, {"ids": list(chunk)}):
            rows.append((row.id, now, event, row.state, row.state, source, reason, attempt))
    insert_rows(conn, job_events, EVENT_COLUMNS, rows)
