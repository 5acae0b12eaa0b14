"""Rescue: the user resubmits a finished job that failed, and only what failed runs again.

HTCondor's rescue DAG, done in place. On a finished compound job (DAG, collection,
parametric) that did not fully succeed, every node that did not end DONE with exit code 0
(failed, ABORTED, CANCELLED, and the DAG descendants aborted because a parent failed) runs
again; nodes that succeeded are kept with their output. A failed normal job can be resubmitted
the same way (gLite has no such verb, but it is the everyday case of the same need).

Each re-run job keeps its id and its history: it goes back to SUBMITTED through the lifecycle
table (``UserResubmission``, reason "resubmitted by the user"), its retry counters start again
from zero, its cancel mark is dropped, its expiry deadline is moved to now plus the expiry
period when it is earlier, its old output files stay until the re-run uploads its own, and the
next hand-out opens a new attempt (attempt numbers go on, so the old attempts stay in the
record). DAG release then makes
the re-run nodes whose parents all succeeded WAITING, within ``max_nodes_running``; the others
wait for their parents as at submission. The compound job's state is re-derived.

Decisions:

* Refused (409 ``Conflict``): a job with unfinished nodes (wait, or cancel it first), a job
  that fully succeeded (nothing to re-run), a node of a compound job (resubmit the compound job:
  a node alone would run again without its descendants), and a job with a PURGED node (its
  sandboxes are gone).
* A CLEARED node (output retrieved) that had failed runs again (retrieving the output of a
  failed DAG to debug it before resubmitting is the usual order); one that succeeded is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from pilotwms.core.errors import Conflict
from pilotwms.core.states import FINISHED, JobKind, JobState
from pilotwms.server.db import jobs, utcnow
from pilotwms.server.logic.accounts import Principal
from pilotwms.server.logic.dag_release import queues_of, release_ready, succeeded
from pilotwms.server.logic.lifecycle import apply_transitions, refresh_parent
from pilotwms.server.logic.visibility import load_job

S = JobState
RESUBMIT_REASON = "resubmitted by the user"
#: Ids per statement, below SQLite's bound-parameter limit.
_CHUNK = 5000


@dataclass(frozen=True)
class NodeEnd:
    """How one job or node stands, as the rescue decision needs it."""

    id: int
    name: str | None
    state: str
    done_code: str | None = None
    exit_code: int | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name else str(self.id)


def choose_rerun(job_id: int, kind: str, nodes: Sequence[NodeEnd]) -> list[int]:
    """The ids to run again: every job of ``nodes`` that did not end DONE with exit code 0.

    Pure. Raises ``Conflict`` (with what to do instead) when the job is not finished, has a
    purged node, or fully succeeded."""
    what = "job" if kind == JobKind.JOB.value else f"{kind} job"
    unfinished = [n for n in nodes if S(n.state) not in FINISHED]
    if unfinished:
        if kind == JobKind.JOB.value:
            raise Conflict(
                f"job {job_id} is {unfinished[0].state}: only a finished job can be "
                "resubmitted; wait for it to end, or cancel it first"
            )
        shown = ", ".join(f"{n.label} {n.state}" for n in unfinished[:5])
        more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
        raise Conflict(
            f"{what} {job_id} still has {len(unfinished)} unfinished node(s) ({shown}{more}); "
            "wait for them to end, or cancel the job first, then resubmit it"
        )
    purged = [n for n in nodes if n.state == S.PURGED.value]
    if purged:
        raise Conflict(
            f"{what} {job_id} cannot be resubmitted: {purged[0].label} was purged and its "
            "sandboxes are gone; submit the JDL again instead"
        )
    rerun = [n.id for n in nodes if not succeeded(n.state, n.done_code, n.exit_code)]
    if not rerun:
        every = "it ended" if kind == JobKind.JOB.value else "every node ended"
        raise Conflict(
            f"{what} {job_id} succeeded ({every} DONE with exit code 0): nothing to resubmit"
        )
    return rerun


def resubmit_job(
    conn: Connection,
    job_id: int,
    principal: Principal,
    shared_groups: Collection[str],
    *,
    expiry_period: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run again what failed in ``job_id`` (see the module docstring), in the caller's write
    transaction. Returns ``{id, resubmitted, released, kept, tq_ids}``: the ids that will run
    again, those of them WAITING already, how many nodes were kept, and the task queues the
    dispatcher must recount."""
    now = now or utcnow()
    if conn.dialect.name == "postgresql":
        # Serialise with node reports and other resubmissions of the same job; locked before
        # it is read, so that a normal job's state below is the current one.
        conn.execute(select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
    row = load_job(conn, job_id, principal, shared_groups)
    if row.parent_id is not None:
        raise Conflict(
            f"job {job_id} is a node of compound job {row.parent_id}; resubmit job "
            f"{row.parent_id}: its failed nodes and their descendants run again"
        )
    compound = row.kind != JobKind.JOB.value
    if compound:
        nodes = [
            NodeEnd(r.id, r.node_name, r.state, r.done_code, r.exit_code)
            for r in conn.execute(
                select(
                    jobs.c.id, jobs.c.node_name, jobs.c.state, jobs.c.done_code, jobs.c.exit_code
                )
                .where(jobs.c.parent_id == job_id)
                .order_by(jobs.c.id)
            )
        ]
    else:
        nodes = [NodeEnd(row.id, None, row.state, row.done_code, row.exit_code)]
    rerun = choose_rerun(job_id, row.kind, nodes)
    moved = apply_transitions(
        conn,
        rerun,
        S.SUBMITTED,
        source=principal.source,
        reason=RESUBMIT_REASON,
        now=now,
        refresh_parents=False,
    )
    if len(moved) != len(rerun):
        raise Conflict(f"job {job_id} changed while it was being resubmitted; try again")
    _reset(conn, moved, expiry_period, now)
    if compound:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(finished_at=None))
        released = release_ready(conn, job_id, now=now)
        refresh_parent(conn, job_id, source=principal.source, now=now)
    else:
        released = apply_transitions(
            conn, moved, S.WAITING, source=principal.source, reason=RESUBMIT_REASON, now=now
        )
    return {
        "id": job_id,
        "resubmitted": sorted(moved),
        "released": sorted(released),
        "kept": len(nodes) - len(moved),
        "tq_ids": sorted(queues_of(conn, released)),
    }


def _reset(
    conn: Connection, ids: Sequence[int], expiry_period: timedelta | None, now: datetime
) -> None:
    """What a re-run starts from: no retries used, no cancel mark, no verdict. Output files
    stay until the re-run uploads its own (as after an automatic retry)."""
    deadline = now + expiry_period if expiry_period and expiry_period > timedelta(0) else None
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(chunk))
            .values(
                retries_used=0,
                shallow_retries_used=0,
                cancel_requested=False,
                done_code=None,
                exit_code=None,
                started_at=None,
                finished_at=None,
            )
        )
        if deadline is not None:
            # A deadline derived from the submission time would abort the re-run at once, so
            # every deadline earlier than now + ExpiryPeriod moves there (once stored, the
            # JDL's own ExpiryTime cannot be told apart from the derived one).
            conn.execute(
                update(jobs)
                .where(
                    jobs.c.id.in_(chunk),
                    jobs.c.expiry_time.is_not(None),
                    jobs.c.expiry_time < deadline,
                )
                .values(expiry_time=deadline)
            )


__all__ = ["RESUBMIT_REASON", "NodeEnd", "choose_rerun", "resubmit_job"]
