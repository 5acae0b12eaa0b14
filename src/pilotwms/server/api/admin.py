"""Administrator routes: purging finished jobs and collecting unreferenced sandbox files."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from pilotwms.server.api.policy import AdminPrincipal
from pilotwms.server.api.services import Services, ServicesDep
from pilotwms.server.db import utcnow
from pilotwms.server.logic.purge import collect_unreferenced, purge_jobs

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class PurgeRequest(BaseModel):
    job_ids: list[int] = Field(default_factory=list, description="Finished jobs to purge")
    finished_more_than_s: int | None = Field(
        default=None, ge=0, description="Also purge every job finished longer ago than this"
    )
    collect: bool = Field(default=True, description="Collect unreferenced sandbox files after")


@router.post("/purge")
def purge(body: PurgeRequest, principal: AdminPrincipal, services: ServicesDep) -> dict[str, Any]:
    """PURGE finished jobs (with their nodes): their sandbox references go, their history
    stays; then delete the sandbox files nobody refers to any more."""
    before = (
        utcnow() - timedelta(seconds=body.finished_more_than_s)
        if body.finished_more_than_s is not None
        else None
    )
    with services.db.write() as conn:
        purged = purge_jobs(conn, body.job_ids, finished_before=before, source=principal.source)
    deleted: list[str] = []
    if body.collect:
        deleted = _collect(services)
    return {"purged": purged, "blobs_deleted": deleted}


@router.post("/gc")
def collect(principal: AdminPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Delete sandbox files no job refers to (older than blob_gc_grace_s)."""
    return {"blobs_deleted": _collect(services)}


def _collect(services: Services) -> list[str]:
    with services.db.write() as conn:
        return collect_unreferenced(
            conn, services.store, grace_seconds=services.settings.blob_gc_grace_s
        )
