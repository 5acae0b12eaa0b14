"""DAG release: a node whose parents all ended well becomes eligible, one that failed dooms its
descendants, and ``max_nodes_running`` caps how many nodes are released at once.

DAG nodes with parents are stored SUBMITTED (``submission``) and only WAITING jobs are matched,
so release is the one gate between a node and the pilots; dispatch knows nothing of DAGs.

* **Release.** When a node ends DONE with exit code 0, each child whose parents have all ended
  so moves SUBMITTED -> WAITING (DAGMan's semantics: a child runs after every parent
  succeeded). Only SUBMITTED children move: a node that already runs, ended or was resubmitted
  is never released twice.
* **Failure.** When a node ends for good without success (DONE with a non-zero exit code or a
  failed done code, ABORTED, CANCELLED), its descendants can never run: those still SUBMITTED
  are ABORTED with the reason "parent X failed", naming the node. Independent branches go on.
* **Throttle.** A compound job with ``max_nodes_running = N`` (the JDL sets it on DAGs) has at
  most N nodes *in flight*: WAITING, READY, SCHEDULED or RUNNING (``IN_FLIGHT``). WAITING counts
  because a WAITING node may be handed to a pilot at any moment; counting it keeps the limit at
  release time without touching dispatch. Eligible nodes beyond the limit stay SUBMITTED and are
  released, oldest id first, whenever a node of the job ends (:func:`release_held`, called at
  the end of every report batch, lease round and deregistration, after the nodes moved). A
  node requeued for a retry (RUNNING -> WAITING) stays in flight and keeps its place.

Everything here runs in the caller's transaction, the one that accepted the node's end: a
report is committed together with the release it causes, or not at all, so a server killed at
any point owes no release for an accepted report. Concurrent releases of the same job are
serialised by locking the job's row (PostgreSQL ``FOR UPDATE``; SQLite's write transactions are
serial already), so two report batches cannot both fill the last free slot, nor both miss a
child whose last two parents they end.
:func:`reconcile` recomputes everything from the database (at server start, after expiry) as a
safety net for ends that bypass the report path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, exists, func, not_, select

from pilotwms.core.states import FINISHED, IN_FLIGHT, DoneCode, JobKind, JobState
from pilotwms.server.db import dag_edges, jobs, utcnow
from pilotwms.server.logic.lifecycle import apply_transitions

S = JobState
RELEASE_REASON = "every parent node ended successfully"
_SUCCEEDED_STATES = (S.DONE.value, S.CLEARED.value)
_IN_FLIGHT = sorted(s.value for s in IN_FLIGHT)
_FINISHED = sorted(s.value for s in FINISHED)
#: Ids per statement, below SQLite's bound-parameter limit.
_CHUNK = 5000


def succeeded(state: str, done_code: str | None, exit_code: int | None) -> bool:
    """Whether a node ended the way its children wait for: DONE (or CLEARED after that) with
    done code ``ok`` and exit code 0."""
    return state in _SUCCEEDED_STATES and done_code == DoneCode.OK.value and (exit_code or 0) == 0


def free_slots(limit: int | None, in_flight: int) -> int | None:
    """How many more nodes may be released under ``max_nodes_running = limit`` with
    ``in_flight`` nodes released already (``None``: no limit)."""
    if limit is None:
        return None
    return max(0, limit - in_flight)


def _succeeded_clause(table: Any) -> ColumnElement[bool]:
    """SQL for :func:`succeeded` on the rows of ``table`` (``jobs`` or an alias of it)."""
    c = table.c
    return and_(
        c.state.in_(_SUCCEEDED_STATES),
        c.done_code == DoneCode.OK.value,
        func.coalesce(c.exit_code, 0) == 0,
    )


def _limit_of(conn: Connection, dag_id: int, *, lock: bool) -> tuple[bool, int | None]:
    """(the compound job exists, its ``max_nodes_running``); locks its row on PostgreSQL."""
    stmt = select(jobs.c.max_nodes_running).where(jobs.c.id == dag_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return False, None
    return True, row.max_nodes_running


def release_after(
    conn: Connection,
    node_ids: Sequence[int],
    *,
    now: datetime,
    refresh_parents: bool = True,
) -> list[int]:
    """After the nodes ``node_ids`` succeeded: move their SUBMITTED children whose parents all
    succeeded to WAITING (within their job's ``max_nodes_running``); returns their ids.

    Set-based for a whole report batch: one query for the children, one for those of them
    with a parent that has not succeeded, one transition. ``refresh_parents=False`` leaves the
    compound jobs' derived state to a caller that refreshes them after the batch."""
    children: set[int] = set()
    dag_ids: set[int] = set()
    for chunk in _chunks(sorted(set(node_ids))):
        for edge in conn.execute(
            select(dag_edges.c.child_job_id, dag_edges.c.dag_id).where(
                dag_edges.c.parent_job_id.in_(chunk)
            )
        ):
            children.add(int(edge.child_job_id))
            dag_ids.add(int(edge.dag_id))
    if not children:
        return []
    _lock(conn, dag_ids)
    dag = jobs.alias("dag")
    parent = jobs.alias("parent")
    candidates: list[int] = []
    throttled: set[int] = set()
    blocked: set[int] = set()
    for chunk in _chunks(sorted(children)):
        for row in conn.execute(
            select(jobs.c.id, jobs.c.parent_id, dag.c.max_nodes_running)
            .join(dag, dag.c.id == jobs.c.parent_id)
            .where(jobs.c.id.in_(chunk), jobs.c.state == S.SUBMITTED.value)
        ):
            if row.max_nodes_running is None:
                candidates.append(int(row.id))
            else:
                # Throttled: the held nodes of the whole job compete for the free slots,
                # oldest first, not just these children.
                throttled.add(int(row.parent_id))
    for chunk in _chunks(candidates):
        blocked.update(
            int(r[0])
            for r in conn.execute(
                select(dag_edges.c.child_job_id)
                .join(parent, parent.c.id == dag_edges.c.parent_job_id)
                .where(dag_edges.c.child_job_id.in_(chunk), not_(_succeeded_clause(parent)))
                .distinct()
            )
        )
    ready = [c for c in candidates if c not in blocked]
    released = apply_transitions(
        conn,
        ready,
        S.WAITING,
        source="server",
        reason=RELEASE_REASON,
        now=now,
        refresh_parents=refresh_parents,
    )
    for dag_id in sorted(throttled):
        released += release_ready(conn, dag_id, now=now)
    return released


def _lock(conn: Connection, dag_ids: Iterable[int]) -> None:
    """Serialise release within each of these compound jobs (PostgreSQL; SQLite's write
    transactions are serial already): without it, two batches ending the last two parents of
    a node could each see the other's parent unfinished (READ COMMITTED) and neither would
    release the node. Rows are locked in id order, so batches cannot deadlock on them."""
    if conn.dialect.name != "postgresql":
        return
    for chunk in _chunks(sorted(set(dag_ids))):
        conn.execute(
            select(jobs.c.id).where(jobs.c.id.in_(chunk)).order_by(jobs.c.id).with_for_update()
        )


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def release_ready(conn: Connection, dag_id: int, *, now: datetime | None = None) -> list[int]:
    """Release every SUBMITTED node of ``dag_id`` whose parents all succeeded (a node without
    parents is eligible), oldest id first, as far as ``max_nodes_running`` allows.

    Set-based: one count and one query with ``NOT EXISTS`` over the edges, whatever the number
    of nodes and edges. Returns the ids released."""
    now = now or utcnow()
    found, limit = _limit_of(conn, dag_id, lock=True)
    if not found:
        return []
    free: int | None = None
    if limit is not None:
        in_flight = conn.execute(
            select(func.count()).where(jobs.c.parent_id == dag_id, jobs.c.state.in_(_IN_FLIGHT))
        ).scalar_one()
        free = free_slots(limit, int(in_flight))
        if not free:
            return []
    parent = jobs.alias("parent")
    blocked = exists().where(
        dag_edges.c.child_job_id == jobs.c.id,
        parent.c.id == dag_edges.c.parent_job_id,
        not_(_succeeded_clause(parent)),
    )
    stmt = (
        select(jobs.c.id)
        .where(jobs.c.parent_id == dag_id, jobs.c.state == S.SUBMITTED.value, ~blocked)
        .order_by(jobs.c.id)
    )
    if free is not None:
        stmt = stmt.limit(free)
    ready = [int(r[0]) for r in conn.execute(stmt)]
    if not ready:
        return []
    # Under a limit the nodes released include parentless ones held back at submission, for
    # which "every parent ended successfully" would read oddly: the free slot is the cause.
    reason = RELEASE_REASON if limit is None else f"a slot of max_nodes_running = {limit} is free"
    return apply_transitions(conn, ready, S.WAITING, source="server", reason=reason, now=now)


def release_held(
    conn: Connection, parent_ids: Iterable[int], *, now: datetime | None = None
) -> set[int]:
    """After nodes of these compound jobs moved: release the nodes their ``max_nodes_running``
    held back, now that slots may be free. Jobs without a limit cost one indexed query for
    all of them. Returns the task queues of the nodes released (for the dispatcher)."""
    ids = sorted(set(parent_ids))
    if not ids:
        return set()
    throttled = [int(r[0]) for r in conn.execute(_THROTTLED, {"ids": ids})]
    released: list[int] = []
    for dag_id in throttled:
        released += release_ready(conn, dag_id, now=now)
    return queues_of(conn, released)


#: Built once: every report batch of a compound job's nodes asks (see lifecycle._STATES_OF).
_THROTTLED = select(jobs.c.id).where(
    jobs.c.id.in_(bindparam("ids", expanding=True)),
    jobs.c.max_nodes_running.is_not(None),
    jobs.c.state.not_in(_FINISHED),
)


def queues_of(conn: Connection, job_ids: Sequence[int]) -> set[int]:
    """The task queues of these jobs."""
    found: set[int] = set()
    for chunk in _chunks(job_ids):
        found.update(
            int(r[0])
            for r in conn.execute(
                select(jobs.c.task_queue_id)
                .where(jobs.c.id.in_(chunk), jobs.c.task_queue_id.is_not(None))
                .distinct()
            )
        )
    return found


def descendants(conn: Connection, node_ids: Iterable[int]) -> set[int]:
    """Every node reachable from ``node_ids`` through DAG edges (not the nodes themselves)."""
    seen: set[int] = set()
    frontier = sorted(set(node_ids))
    while frontier:
        rows = conn.execute(
            select(dag_edges.c.child_job_id).where(dag_edges.c.parent_job_id.in_(frontier))
        ).all()
        fresh = {int(r[0]) for r in rows} - seen
        seen |= fresh
        frontier = sorted(fresh)
    return seen


def abort_descendants(conn: Connection, node_id: int, *, now: datetime) -> list[int]:
    """After ``node_id`` failed for good: ABORT every descendant still waiting for parents."""
    name = conn.execute(select(jobs.c.node_name).where(jobs.c.id == node_id)).scalar()
    seen = descendants(conn, [node_id])
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


def reconcile(
    conn: Connection, dag_ids: Iterable[int] | None = None, *, now: datetime | None = None
) -> set[int]:
    """Recompute release from the database for these unfinished compound jobs (all of them when
    ``None``): abort the SUBMITTED descendants of nodes that failed for good, then release the
    eligible nodes within ``max_nodes_running``. Idempotent; returns the task queues of the
    nodes released.

    Reports commit their release in the same transaction, so after a crash nothing is owed by
    them; this repairs what other paths can leave behind (a node that expired while WAITING)
    and makes a restarted server trust nothing but the database. Only jobs with a SUBMITTED
    node can owe anything (both repairs move SUBMITTED nodes), so the per-job queries run for
    those alone, not for every unfinished collection at start.
    """
    now = now or utcnow()
    node = jobs.alias("node")
    stmt = select(jobs.c.id).where(
        jobs.c.parent_id.is_(None),
        jobs.c.kind != JobKind.JOB.value,
        jobs.c.state.not_in(_FINISHED),
        exists().where(node.c.parent_id == jobs.c.id, node.c.state == S.SUBMITTED.value),
    )
    if dag_ids is not None:
        wanted = sorted(set(dag_ids))
        if not wanted:
            return set()
        stmt = stmt.where(jobs.c.id.in_(wanted))
    released: list[int] = []
    child = jobs.alias("child")
    for (dag_id,) in conn.execute(stmt.order_by(jobs.c.id)).all():
        # Nodes that failed for good and still have a child waiting for them.
        doomed = conn.execute(
            select(jobs.c.id)
            .join(dag_edges, dag_edges.c.parent_job_id == jobs.c.id)
            .join(child, child.c.id == dag_edges.c.child_job_id)
            .where(
                jobs.c.parent_id == dag_id,
                jobs.c.state.in_(_FINISHED),
                not_(_succeeded_clause(jobs)),
                child.c.state == S.SUBMITTED.value,
            )
            .distinct()
            .order_by(jobs.c.id)
        ).all()
        for (node_id,) in doomed:
            abort_descendants(conn, int(node_id), now=now)
        released += release_ready(conn, int(dag_id), now=now)
    return queues_of(conn, released)


def parents_of(conn: Connection, job_ids: Sequence[int]) -> set[int]:
    """The compound jobs these jobs are nodes of."""
    if not job_ids:
        return set()
    return {
        int(r[0])
        for r in conn.execute(
            select(jobs.c.parent_id)
            .where(jobs.c.id.in_(list(job_ids)), jobs.c.parent_id.is_not(None))
            .distinct()
        )
    }


__all__ = [
    "RELEASE_REASON",
    "abort_descendants",
    "descendants",
    "free_slots",
    "parents_of",
    "queues_of",
    "reconcile",
    "release_after",
    "release_held",
    "release_ready",
    "succeeded",
]
