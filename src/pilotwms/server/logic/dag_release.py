"""DAG release: a node whose parents all ended well becomes eligible, one that failed dooms its
descendants.

DAG nodes with parents are stored SUBMITTED (``submission``) and only WAITING jobs are matched.
When a node ends DONE with exit code 0, each child whose parents have all ended so moves
SUBMITTED -> WAITING (gLite's DAGMan semantics: a child runs after every parent succeeded).
When a node ends for good without success (DONE with a non-zero exit code or a failed done
code, ABORTED, CANCELLED), its descendants can never run: those still SUBMITTED are ABORTED
with the reason "parent X failed", naming the node. Throttling by ``max_nodes_running`` is not
applied here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, select

from pilotwms.core.states import DoneCode, JobState
from pilotwms.server.db import dag_edges, jobs
from pilotwms.server.logic.lifecycle import apply_transitions

S = JobState


def _succeeded(state: str, done_code: str | None, exit_code: int | None) -> bool:
    return (
        state in (S.DONE.value, S.CLEARED.value)
        and done_code == DoneCode.OK.value
        and (exit_code or 0) == 0
    )


def release_children(conn: Connection, node_id: int, *, now: datetime) -> list[int]:
    """After ``node_id`` succeeded: move its children whose parents all succeeded to WAITING;
    returns their ids."""
    children = [
        int(r[0])
        for r in conn.execute(
            select(dag_edges.c.child_job_id).where(dag_edges.c.parent_job_id == node_id)
        )
    ]
    if not children:
        return []
    parents = conn.execute(
        select(
            dag_edges.c.child_job_id,
            jobs.c.state,
            jobs.c.done_code,
            jobs.c.exit_code,
        )
        .join(jobs, jobs.c.id == dag_edges.c.parent_job_id)
        .where(dag_edges.c.child_job_id.in_(children))
    ).all()
    blocked = {r.child_job_id for r in parents if not _succeeded(r.state, r.done_code, r.exit_code)}
    ready = [c for c in children if c not in blocked]
    if not ready:
        return []
    return apply_transitions(
        conn,
        ready,
        S.WAITING,
        source="server",
        reason="every parent node ended successfully",
        now=now,
    )


def abort_descendants(conn: Connection, node_id: int, *, now: datetime) -> list[int]:
    """After ``node_id`` failed for good: ABORT every descendant still waiting for parents."""
    name = conn.execute(select(jobs.c.node_name).where(jobs.c.id == node_id)).scalar()
    seen: set[int] = set()
    frontier: Iterable[int] = [node_id]
    while frontier:
        rows = conn.execute(
            select(dag_edges.c.child_job_id).where(dag_edges.c.parent_job_id.in_(list(frontier)))
        ).all()
        fresh = {int(r[0]) for r in rows} - seen
        seen |= fresh
        frontier = sorted(fresh)
    if not seen:
        return []
    pending = [
        int(r[0])
        for r in conn.execute(
            select(jobs.c.id).where(jobs.c.id.in_(sorted(seen)), jobs.c.state == S.SUBMITTED.value)
        )
    ]
    return apply_transitions(
        conn,
        pending,
        S.ABORTED,
        source="server",
        reason=f"parent {name or node_id} failed",
        now=now,
    )


__all__ = ["abort_descendants", "release_children"]
