"""Purging finished jobs and collecting the sandbox files nobody refers to any more.

A purged job keeps its row and its event history (state PURGED) so that "what happened to job
42" still has an answer; its input and output references and pending commands are deleted,
which is what lets ``collect_garbage`` delete blobs only they used.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, select, text, union

from pilotwms.core.errors import IllegalTransition, JobNotFound
from pilotwms.core.states import FINISHED, PURGEABLE, JobState
from pilotwms.server.blobstore import BlobStore, collect_garbage
from pilotwms.server.db import agent_releases, job_commands, job_inputs, job_outputs, jobs, utcnow
from pilotwms.server.logic.lifecycle import apply_transitions

PURGE_REASON = "purged by an administrator"


def purge_jobs(
    conn: Connection,
    job_ids: Sequence[int] = (),
    *,
    finished_before: datetime | None = None,
    source: str = "admin",
) -> list[int]:
    """Purge the given jobs (with all nodes of compound ones) and/or every top-level job that
    finished before ``finished_before``. Returns every id purged (parents and nodes).

    A compound job with unfinished nodes cannot be purged: cancel it first.
    """
    roots = list(job_ids)
    for job_id in roots:
        row = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(job_id)
        if JobState(row.state) not in FINISHED:
            raise IllegalTransition(
                job_id, row.state, JobState.PURGED, "only finished jobs can be purged"
            )
    if finished_before is not None:
        roots += [
            r.id
            for r in conn.execute(
                select(jobs.c.id).where(
                    jobs.c.parent_id.is_(None),
                    jobs.c.state.in_([s.value for s in PURGEABLE]),
                    jobs.c.finished_at < finished_before,
                )
            )
        ]
    if not roots:
        return []
    nodes = [r.id for r in conn.execute(select(jobs.c.id).where(jobs.c.parent_id.in_(roots)))]
    now = utcnow()
    purged = apply_transitions(
        conn,
        nodes,
        JobState.PURGED,
        source=source,
        reason=PURGE_REASON,
        now=now,
        refresh_parents=False,
    )
    purged += apply_transitions(
        conn,
        roots,
        JobState.PURGED,
        source=source,
        reason=PURGE_REASON,
        now=now,
        refresh_parents=False,
    )
    for table in (job_inputs, job_outputs, job_commands):
        for start in range(0, len(purged), 5000):
            chunk = purged[start : start + 5000]
            conn.execute(delete(table).where(table.c.job_id.in_(chunk)))
    return purged


def referenced_digests(conn: Connection) -> set[str]:
    """Every blob digest a job still refers to (inputs and outputs), and the agent zipapps
    installed (``agent_releases``: a replica or a restart may serve any of them)."""
    stmt = union(
        select(job_inputs.c.digest).where(job_inputs.c.digest.is_not(None)),
        select(job_outputs.c.digest),
        select(agent_releases.c.digest),
    )
    return {d for (d,) in conn.execute(stmt)}


def collect_unreferenced(conn: Connection, store: BlobStore, *, grace_seconds: float) -> list[str]:
    """Delete the blobs no job refers to (older than the grace period); return their digests.

    Run it in a write transaction: on SQLite that excludes submissions, on PostgreSQL the SHARE
    lock does, so a submission cannot start referring to a blob between the moment the
    references are read and the moment the blob is deleted (``submission.persist`` re-checks
    that its blobs exist once it holds the conflicting lock).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE job_inputs, job_outputs IN SHARE MODE"))
    return collect_garbage(store, referenced_digests(conn), grace_seconds=grace_seconds)
