"""Pilots as users and administrators see them (the list, one pilot, a drain request), and
perusal of the jobs they run (a peek at the standard output)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from pilotwms.core.errors import PilotNotFound
from pilotwms.server.api.policy import AdminPrincipal, UserPrincipal
from pilotwms.server.api.services import ServicesDep
from pilotwms.server.logic import perusal, pilots

router = APIRouter(tags=["pilots"])


class DrainRequest(BaseModel):
    reason: str = "drained by an administrator"
    grace_s: float | None = None


@router.get("/api/v1/pilots")
def list_pilots(
    principal: UserPrincipal,
    services: ServicesDep,
    state: Annotated[
        list[str] | None,
        Query(
            description="Repeatable: submitted, queued, running, idle, draining, finished, failed"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Pilots, newest first: id, queue, site, backend, batch id, version, state and reason,
    submission, registration and last heartbeat times, jobs run, jobs running now, the logs
    stored and the slot ad."""
    with services.db.read() as conn:
        return {"pilots": pilots.list_pilots(conn, states=state or (), limit=limit)}


@router.get("/api/v1/pilots/{pilot_id}")
def get_pilot(pilot_id: int, principal: UserPrincipal, services: ServicesDep) -> dict[str, Any]:
    with services.db.read() as conn:
        for item in pilots.list_pilots(conn, ids=[pilot_id]):
            return item
    raise PilotNotFound(pilot_id)


@router.post("/api/v1/admin/pilots/{pilot_id}/drain")
def drain_pilot(
    pilot_id: int, body: DrainRequest, principal: AdminPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Ask a pilot to take no more work; its running jobs get ``grace_s`` (none: until they
    end). Delivered with its next heartbeat."""
    with services.db.write() as conn:
        pilots.request_drain(conn, pilot_id, body.reason, body.grace_s)
    return {"pilot_id": str(pilot_id), "drain": body.model_dump()}


@router.post("/api/v1/jobs/{job_id}/peek")
def request_peek(job_id: int, principal: UserPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Ask the pilot running the job for the tail of its standard output (delivered with the
    pilot's next heartbeat; read it with GET)."""
    with services.db.write() as conn:
        return perusal.request_peek(conn, job_id, principal, services.shared_groups)


@router.get("/api/v1/jobs/{job_id}/peek")
def read_peek(job_id: int, principal: UserPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The latest standard-output tail the job's pilot sent."""
    with services.db.read() as conn:
        return perusal.last_tail(conn, job_id, principal, services.shared_groups)
