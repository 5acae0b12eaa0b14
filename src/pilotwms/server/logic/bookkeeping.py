"""Status, listing, event history and JDL of jobs: the read side of the job store."""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from pilotwms.core.errors import BadRequest
from pilotwms.core.states import JobKind, JobState
from pilotwms.server.db import dag_edges, job_events, jobs
from pilotwms.server.logic.accounts import Principal
from pilotwms.server.logic.visibility import load_job, visible

MAX_PAGE = 1000

_SUMMARY_COLUMNS = (
    jobs.c.id,
    jobs.c.parent_id,
    jobs.c.kind,
    jobs.c.node_name,
    jobs.c.owner,
    jobs.c.owner_group,
    jobs.c.state,
    jobs.c.done_code,
    jobs.c.exit_code,
    jobs.c.reason,
    jobs.c.cpus,
    jobs.c.memory_mb,
    jobs.c.wall_time_s,
    jobs.c.priority,
    jobs.c.retry_count,
    jobs.c.shallow_retry_count,
    jobs.c.retries_used,
    jobs.c.shallow_retries_used,
    jobs.c.attempt,
    jobs.c.cancel_requested,
    jobs.c.node_count,
    jobs.c.max_nodes_running,
    jobs.c.task_queue_id,
    jobs.c.expiry_time,
    jobs.c.submitted_at,
    jobs.c.updated_at,
    jobs.c.started_at,
    jobs.c.finished_at,
)


def summary(row: Any) -> dict[str, Any]:
    """The JSON form of a job row (timestamps as ISO 8601 strings)."""
    out: dict[str, Any] = {}
    for column in _SUMMARY_COLUMNS:
        value = row._mapping[column.name]
        out[column.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def job_status(
    conn: Connection,
    job_id: int,
    principal: Principal,
    shared_groups: Collection[str],
    *,
    with_nodes: bool = True,
) -> dict[str, Any]:
    """One job; a compound job adds its node counts per state, its nodes and (DAG) edges."""
    row = load_job(conn, job_id, principal, shared_groups)
    out = summary(row)
    if row.kind == JobKind.JOB:
        return out
    counts: dict[str, int] = dict(
        conn.execute(
            select(jobs.c.state, func.count())
            .where(jobs.c.parent_id == job_id)
            .group_by(jobs.c.state)
        ).all()
    )
    out["children"] = {"total": sum(counts.values()), "states": counts}
    if with_nodes:
        out["nodes"] = [
            {
                "id": n.id,
                "name": n.node_name,
                "state": n.state,
                "done_code": n.done_code,
                "exit_code": n.exit_code,
            }
            for n in conn.execute(
                select(
                    jobs.c.id, jobs.c.node_name, jobs.c.state, jobs.c.done_code, jobs.c.exit_code
                )
                .where(jobs.c.parent_id == job_id)
                .order_by(jobs.c.id)
            )
        ]
        if row.kind == JobKind.DAG:
            out["edges"] = [
                [e.parent_job_id, e.child_job_id]
                for e in conn.execute(
                    select(dag_edges.c.parent_job_id, dag_edges.c.child_job_id)
                    .where(dag_edges.c.dag_id == job_id)
                    .order_by(dag_edges.c.parent_job_id, dag_edges.c.child_job_id)
                )
            ]
    return out


@dataclass(frozen=True)
class JobFilter:
    """What ``GET /api/v1/jobs`` may filter on; empty fields do not filter.

    Without ``ids`` or ``parent`` only top-level jobs are listed (nodes are reached through
    their compound job), like gLite's status of a collection.
    """

    ids: Sequence[int] = ()
    states: Sequence[JobState] = ()
    owner: str | None = None
    parent: int | None = None
    since: datetime | None = None
    limit: int = 100
    cursor: str | None = None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, value = raw.split(":", 1)
        if kind != "id":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            f"cursor {cursor!r} is not one this server issued; pass next_cursor unchanged"
        ) from exc


def list_jobs(
    conn: Connection, flt: JobFilter, principal: Principal, shared_groups: Collection[str]
) -> dict[str, Any]:
    """A page of jobs in id order (keyset pagination: stable under concurrent submissions)."""
    if not 1 <= flt.limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    stmt = select(*_SUMMARY_COLUMNS).where(visible(principal, shared_groups))
    if flt.ids:
        stmt = stmt.where(jobs.c.id.in_(list(flt.ids)))
    if flt.parent is not None:
        stmt = stmt.where(jobs.c.parent_id == flt.parent)
    elif not flt.ids:
        stmt = stmt.where(jobs.c.parent_id.is_(None))
    if flt.states:
        stmt = stmt.where(jobs.c.state.in_([s.value for s in flt.states]))
    if flt.owner:
        stmt = stmt.where(jobs.c.owner == flt.owner)
    if flt.since is not None:
        stmt = stmt.where(jobs.c.submitted_at >= flt.since)
    if flt.cursor:
        stmt = stmt.where(jobs.c.id > decode_cursor(flt.cursor))
    rows = conn.execute(stmt.order_by(jobs.c.id).limit(flt.limit + 1)).all()
    page = rows[: flt.limit]
    more = len(rows) > flt.limit
    return {
        "jobs": [summary(r) for r in page],
        "next_cursor": encode_cursor(page[-1].id) if more and page else None,
    }


def job_events_of(
    conn: Connection, job_id: int, principal: Principal, shared_groups: Collection[str]
) -> list[dict[str, Any]]:
    """The full event history of a job, oldest first."""
    load_job(conn, job_id, principal, shared_groups)
    rows = conn.execute(
        select(
            job_events.c.time,
            job_events.c.event,
            job_events.c.state_from,
            job_events.c.state_to,
            job_events.c.source,
            job_events.c.reason,
            job_events.c.attempt,
        )
        .where(job_events.c.job_id == job_id)
        .order_by(job_events.c.id)
    )
    return [{**r._mapping, "time": r.time.isoformat()} for r in rows]


def job_jdl(
    conn: Connection,
    job_id: int,
    principal: Principal,
    shared_groups: Collection[str],
    form: str,
) -> str:
    """The JDL as submitted (top-level jobs only) or as expanded with the defaults applied."""
    row = load_job(conn, job_id, principal, shared_groups)
    if form == "expanded":
        return str(row.jdl)
    if form == "submitted":
        if row.jdl_submitted is None:
            raise BadRequest(
                f"job {job_id} is node {row.node_name!r} of job {row.parent_id}; the submitted "
                f"JDL is that of job {row.parent_id} (form=expanded shows this node's)"
            )
        return str(row.jdl_submitted)
    raise BadRequest(f"form must be 'submitted' or 'expanded', not {form!r}")
