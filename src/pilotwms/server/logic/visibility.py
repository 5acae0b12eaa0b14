"""Who may see which job: the owner, members of a shared group, admins.

Every query that reads or acts on jobs for a caller goes through ``visible``; a job the caller
may not see answers exactly like a job that does not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Connection, or_, select, true

from pilotwms.core.errors import JobNotFound
from pilotwms.server.db import jobs
from pilotwms.server.logic.accounts import Principal, Role


def visible(principal: Principal, shared_groups: Collection[str]) -> ColumnElement[bool]:
    """A WHERE clause selecting the jobs ``principal`` may see."""
    if principal.role == Role.ADMIN:
        return true()
    own = jobs.c.owner == principal.user
    if principal.group in shared_groups:
        return or_(own, jobs.c.owner_group == principal.group)
    return own


def load_job(
    conn: Connection, job_id: int, principal: Principal, shared_groups: Collection[str]
) -> Any:
    """The job row, or ``JobNotFound`` when it does not exist or is not the caller's."""
    row = conn.execute(
        select(jobs).where(jobs.c.id == job_id, visible(principal, shared_groups))
    ).first()
    if row is None:
        raise JobNotFound(job_id)
    return row
