"""The output sandbox of a job: listing, single files, and clearing (gLite's CLEARED).

Output rows name blobs in the sandbox store. A compound job's output is that of its nodes, each
under a folder named after the node. Clearing moves DONE jobs to CLEARED and drops their output
rows, which frees the blobs for garbage collection (gLite: "output transferred back to user and
freed").
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select

from pilotwms.core.archives import safe_member_name
from pilotwms.core.errors import IllegalTransition, NotFound
from pilotwms.core.states import JobKind, JobState
from pilotwms.server.db import job_outputs, jobs, utcnow
from pilotwms.server.logic.accounts import Principal
from pilotwms.server.logic.lifecycle import apply_transitions
from pilotwms.server.logic.visibility import load_job

CLEAR_REASON = "user retrieved output sandbox"


@dataclass(frozen=True)
class OutputFile:
    """One output file; ``path`` is its name in listings and archives (``node/name`` for the
    nodes of a compound job)."""

    job_id: int
    path: str
    name: str
    digest: str
    size: int


def node_folder(node_name: str | None, job_id: int) -> str:
    """The folder of a node's output: its name, or ``node_<id>`` for unnamed nodes."""
    return node_name if node_name else f"node_{job_id}"


def output_files(
    conn: Connection, job_id: int, principal: Principal, shared_groups: Collection[str]
) -> list[OutputFile]:
    row = load_job(conn, job_id, principal, shared_groups)
    stmt = select(
        job_outputs.c.job_id,
        job_outputs.c.name,
        job_outputs.c.digest,
        job_outputs.c.size,
        jobs.c.node_name,
    ).join(jobs, jobs.c.id == job_outputs.c.job_id)
    if row.kind == JobKind.JOB:
        stmt = stmt.where(job_outputs.c.job_id == job_id)
        return [
            OutputFile(r.job_id, r.name, r.name, r.digest, r.size)
            for r in conn.execute(stmt.order_by(job_outputs.c.name))
        ]
    stmt = stmt.where(jobs.c.parent_id == job_id).order_by(jobs.c.id, job_outputs.c.name)
    return [
        OutputFile(
            r.job_id, f"{node_folder(r.node_name, r.job_id)}/{r.name}", r.name, r.digest, r.size
        )
        for r in conn.execute(stmt)
    ]


def output_file(
    conn: Connection,
    job_id: int,
    path: str,
    principal: Principal,
    shared_groups: Collection[str],
) -> OutputFile:
    for item in output_files(conn, job_id, principal, shared_groups):
        if item.path == path:
            return item
    raise NotFound(
        f"job {job_id} has no output file {path!r}; list them with GET /api/v1/jobs/{job_id}/output"
    )


def record_output(conn: Connection, job_id: int, name: str, digest: str, size: int) -> None:
    """Attach an uploaded blob to a job's output sandbox (replacing a file of the same name).

    The name must be a safe relative path: it becomes a path in the archives users download.
    """
    name = safe_member_name(name)
    conn.execute(
        delete(job_outputs).where(job_outputs.c.job_id == job_id, job_outputs.c.name == name)
    )
    conn.execute(
        job_outputs.insert().values(
            job_id=job_id, name=name, digest=digest, size=size, created_at=utcnow()
        )
    )


def clear_output(
    conn: Connection, job_id: int, principal: Principal, shared_groups: Collection[str]
) -> list[int]:
    """DONE -> CLEARED for the job (or every DONE node of a compound job); output freed."""
    row = load_job(conn, job_id, principal, shared_groups)
    if row.kind == JobKind.JOB:
        ids = [job_id]
    else:
        ids = [
            r.id
            for r in conn.execute(
                select(jobs.c.id).where(
                    jobs.c.parent_id == job_id, jobs.c.state == JobState.DONE.value
                )
            )
        ]
    cleared = apply_transitions(
        conn, ids, JobState.CLEARED, source=principal.source, reason=CLEAR_REASON
    )
    if not cleared:
        raise IllegalTransition(
            job_id, row.state, JobState.CLEARED, "only the output of DONE jobs can be cleared"
        )
    conn.execute(delete(job_outputs).where(job_outputs.c.job_id.in_(cleared)))
    return cleared


def outputs_summary(files: list[OutputFile]) -> list[dict[str, Any]]:
    return [{"name": f.path, "job_id": f.job_id, "size": f.size, "digest": f.digest} for f in files]
