"""The pilot protocol (``docs/pilot-protocol.md``): register, work (long poll), heartbeat,
reports, output upload, deregister, and the agent zipapp. Pilot (and admin) tokens only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from pilotwms.core.errors import BadRequest, NotFound, PilotNotFound, StaleAttempt, TooLarge
from pilotwms.server.api.policy import PilotPrincipal
from pilotwms.server.api.services import Services, ServicesDep
from pilotwms.server.logic import pilots
from pilotwms.server.logic.accounts import Principal, Role
from pilotwms.server.logic.attempts import Effects, apply_reports, check_current
from pilotwms.server.logic.dispatch import Dispatcher, WorkRequest
from pilotwms.server.logic.leases import release_pilot
from pilotwms.server.logic.output import record_output

router = APIRouter(prefix="/api/v1/pilot", tags=["pilot protocol"])


AGENT_VERSION_HEADER = "X-Pilotwms-Agent-Version"


class RegisterRequest(BaseModel):
    ad: dict[str, Any] = Field(default_factory=dict)
    agent_version: str = ""
    queue: str = ""
    batch_id: str = ""


class WorkBody(BaseModel):
    free_cores: int = 1
    free_memory_mb: int | None = None
    time_left_s: float | None = None
    max_jobs: int = 1
    wait_s: float = 0.0
    ad_update: dict[str, Any] = Field(default_factory=dict)
    prefetch: int = 0


class HeartbeatJob(BaseModel):
    job_id: str | int
    attempt: int
    cpu_s: float | None = None
    rss_mb: float | None = None
    payload_started: bool = False


class HeartbeatBody(BaseModel):
    state: str = "running"
    jobs: list[HeartbeatJob] = Field(default_factory=list)


class ReportBatch(BaseModel):
    reports: list[dict[str, Any]] = Field(default_factory=list)


def _pilot_id(text: str) -> int:
    if not text.isdigit():
        raise PilotNotFound(text)
    return int(text)


def _job_id(text: str) -> int:
    if not text.isdigit():
        raise NotFound(f"job {text!r} does not exist")
    return int(text)


def _token_of(principal: Principal) -> str | None:
    """Pilots act only on themselves; admins on any pilot."""
    return principal.token_id if principal.role == Role.PILOT else None


def _dispatcher(services: Services) -> Dispatcher:
    assert services.dispatcher is not None, "the app's lifespan creates the dispatcher"
    return services.dispatcher


@router.post("/register")
def register(
    body: RegisterRequest, principal: PilotPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Record a pilot and its slot ad (adopting the factory's row of its batch job, if any);
    the reply carries its id and the protocol timings. A pilot of another agent version than
    the one served registers draining (the rolling upgrade)."""
    settings = services.settings
    lease = settings.effective_lease_timeout_s
    current = services.agent_version
    with services.db.write() as conn:
        pilot_id = pilots.register(
            conn,
            ad=body.ad,
            agent_version=body.agent_version,
            queue=body.queue,
            batch_id=body.batch_id,
            token_id=principal.token_id,
            lease_s=lease,
            current_version=current,
        )
    return {
        "pilot_id": str(pilot_id),
        "heartbeat_interval_s": settings.heartbeat_interval_s,
        "lease_timeout_s": lease,
        "poll_wait_s": settings.work_max_wait_s,
    }


@router.post("/{pilot_id}/work")
async def request_work(
    pilot_id: str, body: WorkBody, principal: PilotPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Jobs for this pilot: at once when some match, else as soon as one arrives within
    ``wait_s`` (at most ``work_max_wait_s``), else none."""
    pid = _pilot_id(pilot_id)
    dispatcher = _dispatcher(services)
    request = WorkRequest(
        free_cores=body.free_cores,
        free_memory_mb=body.free_memory_mb,
        time_left_s=body.time_left_s,
        max_jobs=body.max_jobs,
        ad_update=body.ad_update,
        prefetch=body.prefetch,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, min(body.wait_s, services.settings.work_max_wait_s))
    notifier = dispatcher.notifier
    assert notifier is not None
    while True:
        if notifier.closed:  # the server stops: no new attempts, and no request left waiting
            return {"jobs": []}
        woken = notifier.current()
        specs = await anyio.to_thread.run_sync(dispatcher.hand_out, pid, request)
        if specs:
            return {"jobs": specs}
        remaining = deadline - loop.time()
        if remaining <= 0:
            return {"jobs": []}
        notifier.parked += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), remaining)
        finally:
            notifier.parked -= 1


@router.post("/{pilot_id}/heartbeat")
def heartbeat(
    pilot_id: str, body: HeartbeatBody, principal: PilotPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Renew the pilot's lease, record its jobs' use; the reply carries its commands."""
    pid = _pilot_id(pilot_id)
    running = [
        pilots.RunningJob(int(j.job_id), j.attempt, j.cpu_s, j.rss_mb, j.payload_started)
        for j in body.jobs
        if str(j.job_id).isdigit()
    ]
    current = services.agent_version
    with services.db.write() as conn:
        pilots.live_pilot(conn, pid, _token_of(principal))
        commands = pilots.heartbeat(
            conn,
            pid,
            state=body.state,
            running=running,
            lease_s=services.settings.effective_lease_timeout_s,
            current_version=current,
        )
    return {"commands": commands}


@router.post("/{pilot_id}/reports")
def send_reports(
    pilot_id: str, body: ReportBatch, principal: PilotPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Apply a batch of reports; one outcome per report (accepted, duplicate, stale)."""
    pid = _pilot_id(pilot_id)
    effects = Effects()
    with services.db.write() as conn:
        pilots.live_pilot(conn, pid, _token_of(principal))
        results = apply_reports(conn, pid, body.reports, caps=services.retry_caps, effects=effects)
    services.jobs_changed(effects.tq_ids, dict(effects.released))
    return {"results": results}


@router.put("/{pilot_id}/jobs/{job_id}/attempts/{attempt}/output")
async def upload_output(  # noqa: PLR0917 - FastAPI path parameters
    pilot_id: str,
    job_id: str,
    attempt: int,
    name: str,
    request: Request,
    principal: PilotPrincipal,
    services: ServicesDep,
) -> JSONResponse:
    """Store one output file of the current attempt; 409 when the attempt is stale."""
    pid, jid = _pilot_id(pilot_id), _job_id(job_id)
    token = _token_of(principal)

    def check() -> None:
        with services.db.read() as conn:
            pilots.live_pilot(conn, pid, token)
            if check_current(conn, jid, attempt) is None:
                raise StaleAttempt(jid, attempt, None)

    await anyio.to_thread.run_sync(check)
    limit = services.settings.max_sandbox_file_bytes
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise TooLarge(f"output file {name!r}", received, limit)
            spool.write(chunk)
        spool.seek(0)

        def store() -> dict[str, Any]:
            info = services.store.put(spool, max_size=limit)  # type: ignore[arg-type]
            with services.db.write() as conn:
                if check_current(conn, jid, attempt) is None:
                    raise StaleAttempt(jid, attempt, None)
                try:
                    record_output(conn, jid, name, info.digest, info.size)
                except ValueError as exc:
                    raise BadRequest(f"output file name {name!r}: {exc}") from exc
            return {"name": name, "digest": info.digest, "size": info.size}

        stored = await anyio.to_thread.run_sync(store)
    finally:
        spool.close()
    return JSONResponse(stored, status_code=201)


@router.delete("/{pilot_id}")
async def deregister(
    pilot_id: str, request: Request, principal: PilotPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """The pilot leaves; attempts it still holds are requeued (or aborted past the limits)."""
    pid = _pilot_id(pilot_id)
    raw = await request.body()
    try:
        reason = str((json.loads(raw) if raw else {}).get("reason") or "")
    except (json.JSONDecodeError, AttributeError):
        reason = ""
    token = _token_of(principal)

    def leave() -> Effects:
        effects = Effects()
        with services.db.write() as conn:
            pilots.live_pilot(conn, pid, token)
            release_pilot(conn, pid, reason, caps=services.retry_caps, effects=effects)
        return effects

    effects = await anyio.to_thread.run_sync(leave)
    _dispatcher(services).forget_pilot(pid)
    services.jobs_changed(effects.tq_ids, dict(effects.released))
    return {"pilot_id": str(pid), "state": pilots.FINISHED}


@router.get("/agent.pyz")
def agent_zipapp(principal: PilotPrincipal, services: ServicesDep) -> FileResponse:
    """The current agent as one file (``python3 agent.pyz --server URL --token T``)."""
    if services.agents is None:
        raise NotFound("the agent zipapp was not built")
    release = services.agents.current()
    return FileResponse(
        release.path,
        media_type="application/zip",
        filename="agent.pyz",
        headers={AGENT_VERSION_HEADER: release.version, "X-Pilotwms-Agent-Digest": release.digest},
    )
