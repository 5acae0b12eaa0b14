"""The routes the pilot factory uses (``docs/pilot-protocol.md``, "Factory API"): pilot records
from submission and their batch states, the demand, pilot tokens, pilot logs, and the agent
served to pilots (replaceable at run time: the rolling upgrade). Admin tokens, except reading a
pilot's log, which every user who may list pilots may do."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from pilotwms.core.errors import NotFound, TooLarge
from pilotwms.server.api.policy import AdminPrincipal, UserPrincipal
from pilotwms.server.api.services import Services, ServicesDep
from pilotwms.server.logic import pilot_logs, pilots
from pilotwms.server.logic.accounts import Role, create_token
from pilotwms.server.logic.agent_releases import MAX_ZIPAPP_BYTES, AgentReleases
from pilotwms.server.logic.attempts import Effects
from pilotwms.server.logic.demand import demand_pilots, waiting_task_queues
from pilotwms.server.logic.leases import release_attempts
from pilotwms.server.logic.retries import EndStatus

router = APIRouter(tags=["pilot factory"])
Stream = Annotated[str, Query(description="stdout or stderr")]


class SubmittedPilots(BaseModel):
    queue: str
    backend: str
    batch_ids: list[str]
    factory: str = ""
    log_paths: dict[str, dict[str, str]] = Field(default_factory=dict)


class BatchStateItem(BaseModel):
    batch_id: str
    state: str
    reason: str | None = None


class BatchStates(BaseModel):
    queue: str
    pilots: list[BatchStateItem]


class PilotTokenRequest(BaseModel):
    lifetime_s: float | None = Field(
        default=None, description="Seconds; null: the server's token_default_lifetime"
    )
    description: str | None = None


@router.post("/api/v1/admin/pilots")
def record_pilots(
    body: SubmittedPilots, principal: AdminPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Record pilots just submitted to a batch system (state ``submitted``); the agent of each
    adopts its row when it registers with the same queue and batch id."""
    with services.db.write() as conn:
        made = pilots.record_submitted(
            conn,
            queue=body.queue,
            backend=body.backend,
            batch_ids=body.batch_ids,
            factory=body.factory,
            log_paths=body.log_paths,
        )
    return {"pilots": [{"id": str(pid), "batch_id": batch_id} for pid, batch_id in made]}


@router.post("/api/v1/admin/pilots/batch-states")
def batch_states(
    body: BatchStates, principal: AdminPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """What the batch system says of a queue's pilots: unregistered ones become ``queued``
    or end (``failed`` with the batch system's reason); registered ones whose batch job ended
    end at once and their attempts are requeued, without waiting for the lease (a shallow
    retry when the batch job was cancelled)."""
    changes = [pilots.BatchChange(p.batch_id, p.state, p.reason or "") for p in body.pilots]
    effects = Effects()
    with services.db.write() as conn:
        updated, ended = pilots.apply_batch_states(conn, body.queue, changes)
        for pilot_id, state in ended:
            # Cancelled (the factory's cancel-pilots, an operator's scancel): the pilot was
            # taken away, a shallow retry as for a drained job. Otherwise it died without a
            # word: as for a lost lease.
            release_attempts(
                conn,
                pilot_id,
                f"its batch job ended: {state}",
                caps=services.retry_caps,
                effects=effects,
                status=EndStatus.DRAINED if state == "cancelled" else EndStatus.LEASE_EXPIRED,
            )
    if services.dispatcher is not None:
        for pilot_id, _ in ended:
            services.dispatcher.forget_pilot(pilot_id)
    services.jobs_changed(effects.tq_ids, dict(effects.released))
    return {"updated": updated}


@router.get("/api/v1/admin/demand")
def demand(principal: AdminPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Waiting task queues in priority order (with a representative job ad each), the pilots
    alive or ended within the hour, and the agent version pilots should run."""
    assert services.dispatcher is not None, "the app's lifespan creates the dispatcher"
    queues = waiting_task_queues(services.dispatcher)
    with services.db.read() as conn:
        found = demand_pilots(conn)
    return {"agent_version": services.agent_version, "task_queues": queues, "pilots": found}


@router.post("/api/v1/admin/pilot-tokens")
def pilot_token(
    body: PilotTokenRequest, principal: AdminPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """A token of role ``pilot`` (valid only on the pilot routes), owned by the caller."""
    settings = services.settings
    lifetime = (
        timedelta(seconds=body.lifetime_s)
        if body.lifetime_s is not None
        else settings.token_default_ttl
    )
    with services.db.write() as conn:
        issued = create_token(
            conn,
            principal.user,
            role=Role.PILOT,
            lifetime=lifetime,
            max_lifetime=settings.token_max_ttl,
            description=body.description or "pilot token for the pilot factory",
        )
    return {
        "token": issued.token,
        "token_id": issued.token_id,
        "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
    }


@router.put("/api/v1/admin/pilots/{pilot_id}/log")
async def upload_log(  # noqa: PLR0917 - FastAPI path and query parameters
    pilot_id: int,
    request: Request,
    principal: AdminPrincipal,
    services: ServicesDep,
    stream: Stream = "stdout",
    total_bytes: Annotated[
        int | None, Query(ge=0, description="Size of the whole file when the body is its tail")
    ] = None,
) -> dict[str, Any]:
    """Store a pilot's stdout or stderr (the raw body); only its last MiB is kept."""
    pilot_logs.check_stream(stream)
    tail = bytearray()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        tail += chunk
        if len(tail) > 2 * pilot_logs.LOG_LIMIT:
            del tail[: len(tail) - pilot_logs.LOG_LIMIT]
    total = max(received, total_bytes or 0)

    def store() -> pilot_logs.PilotLog:
        with services.db.write() as conn:
            return pilot_logs.store_log(conn, pilot_id, stream, bytes(tail), total_bytes=total)

    log = await anyio.to_thread.run_sync(store)
    return {
        "pilot_id": str(pilot_id),
        "stream": stream,
        "stored_bytes": len(log.content),
        "total_bytes": log.total_bytes,
        "truncated": log.truncated,
    }


@router.get("/api/v1/pilots/{pilot_id}/log")
def read_log(
    pilot_id: int, principal: UserPrincipal, services: ServicesDep, stream: Stream = "stdout"
) -> Response:
    """A pilot's stdout or stderr as text; a first line says when its beginning is cut off
    (so does the header ``X-Pilotwms-Log-Truncated``)."""
    with services.db.read() as conn:
        log = pilot_logs.read_log(conn, pilot_id, stream)
    notice = pilot_logs.truncation_notice(log).encode()
    return Response(
        notice + log.content,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Pilotwms-Log-Truncated": "true" if log.truncated else "false",
            "X-Pilotwms-Log-Bytes": str(log.total_bytes),
        },
    )


def _agents(services: Services) -> AgentReleases:
    if services.agents is None:
        raise NotFound("this server serves no agent zipapp")
    return services.agents


@router.put("/api/v1/admin/agent")
async def install_agent(
    request: Request, principal: AdminPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Make the zipapp in the body the agent served to pilots. Pilots of any other version are
    drained at their next heartbeat (their jobs run to the end) and get no new work."""
    agents = _agents(services)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_ZIPAPP_BYTES:
            raise TooLarge("the agent zipapp", len(data), MAX_ZIPAPP_BYTES)
    previous = await anyio.to_thread.run_sync(agents.current)
    release = await anyio.to_thread.run_sync(agents.install, bytes(data), principal.user)
    return {
        "version": release.version,
        "digest": release.digest,
        "size": release.size,
        "previous_version": previous.version,
    }


@router.get("/api/v1/admin/agent")
def agent_releases_list(principal: AdminPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The agent served now and every agent installed before (newest first)."""
    agents = _agents(services)
    current = agents.current()
    return {
        "current": {"version": current.version, "digest": current.digest, "size": current.size},
        "releases": agents.history(),
    }
