"""Cancelling a job, or every unfinished node of a compound job.

A job no pilot holds yet (SUBMITTED, WAITING) is CANCELLED at once. A job a pilot holds (READY,
SCHEDULED, RUNNING) keeps its state, is marked ``cancel_requested`` and gets a ``cancel`` row in
``job_commands``: the pilot protocol delivers it with the pilot's next heartbeat, the pilot kills
the process group and reports the job CANCELLED (and a requeue of a job marked so cancels it
instead). Finished nodes are left as they are. A single DAG node cancelled by its own id
aborts its descendants, as any failed node does (``dag_release``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, select, update

from pilotwms.core.errors import IllegalTransition
from pilotwms.core.states import ACTIVE, FINISHED, WAITING_LIKE, JobKind, JobState
from pilotwms.server.db import job_commands, jobs, utcnow
from pilotwms.server.logic.accounts import Principal
from pilotwms.server.logic.dag_release import abort_descendants, release_ready
from pilotwms.server.logic.lifecycle import apply_transitions, record_event
from pilotwms.server.logic.visibility import load_job

CANCEL_REASON = "cancelled by the user"
CANCEL_REQUEST_EVENT = "CancelRequest"


def cancel_job(
    conn: Connection, job_id: int, principal: Principal, shared_groups: Collection[str]
) -> dict[str, Any]:
    """Cancel ``job_id``; returns the ids cancelled at once and those whose pilot must kill them
    (and ``released``: DAG nodes a freed ``max_nodes_running`` slot made WAITING).

    Raises ``IllegalTransition`` when nothing is left to cancel (the job already finished).
    """
    row = load_job(conn, job_id, principal, shared_groups)
    now = utcnow()
    if row.kind == JobKind.JOB:
        unfinished = JobState(row.state) not in FINISHED
        targets = [(row.id, JobState(row.state), row.attempt)] if unfinished else []
    else:
        targets = [
            (r.id, JobState(r.state), r.attempt)
            for r in conn.execute(
                select(jobs.c.id, jobs.c.state, jobs.c.attempt).where(
                    jobs.c.parent_id == job_id,
                    jobs.c.state.not_in([s.value for s in FINISHED]),
                )
            )
        ]
    if not targets:
        state = JobState(row.state)
        cause = (
            f"the job is already {state}" if row.kind == JobKind.JOB else "every node has finished"
        )
        raise IllegalTransition(job_id, state, JobState.CANCELLED, cause)
    released: list[int] = []
    immediate = [i for i, state, _ in targets if state in WAITING_LIKE]
    held = [(i, attempt) for i, state, attempt in targets if state in ACTIVE]
    cancelled = apply_transitions(
        conn, immediate, JobState.CANCELLED, source=principal.source, reason=CANCEL_REASON, now=now
    )
    if row.kind == JobKind.JOB and row.parent_id is not None and cancelled:
        # One DAG node cancelled by its own id: its descendants can no longer run, and a slot
        # of the job's max_nodes_running is free (a held node's end does this on its report).
        abort_descendants(conn, row.id, now=now)
        released = release_ready(conn, row.parent_id, now=now)
    requested = [i for i, _ in held]
    if held:
        fresh = {
            r.id
            for r in conn.execute(
                select(jobs.c.id).where(
                    jobs.c.id.in_(requested), jobs.c.cancel_requested.is_(False)
                )
            )
        }
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(requested))
            .values(cancel_requested=True, updated_at=now)
        )
        if fresh:
            conn.execute(
                job_commands.insert(),
                [
                    {"job_id": i, "attempt": attempt, "command": "cancel", "created_at": now}
                    for i, attempt in held
                    if i in fresh
                ],
            )
            record_event(
                conn,
                sorted(fresh),
                CANCEL_REQUEST_EVENT,
                source=principal.source,
                reason="the pilot will kill the job",
                now=now,
            )
    result: dict[str, Any] = {"id": job_id, "cancelled": cancelled, "cancel_requested": requested}
    if released:
        result["released"] = released
    return result
