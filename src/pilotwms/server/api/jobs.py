"""Job routes: submit (single and bulk), status, list, events, cancel, resubmit, JDL."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from pilotwms.core.errors import BadRequest, TooLarge
from pilotwms.core.states import JobState
from pilotwms.server.api.policy import UserPrincipal
from pilotwms.server.api.services import Services, ServicesDep
from pilotwms.server.logic import bookkeeping, cancellation, rescue
from pilotwms.server.logic.accounts import Principal
from pilotwms.server.logic.sandboxes import check_references, store_uploads
from pilotwms.server.logic.submission import Plan, persist, plan

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

#: Multipart field names whose parts are keyed by their file name instead of the field name.
FILE_FIELDS = ("sandbox", "file", "files")
_MULTIPART_OVERHEAD = 64 * 1024


class SubmitRequest(BaseModel):
    """A JDL, with its local InputSandbox entries mapped to digests uploaded before."""

    jdl: str
    sandbox: dict[str, str] = Field(default_factory=dict)


class BulkRequest(BaseModel):
    jobs: list[SubmitRequest]
    #: Files shared by every JDL of the request (entry -> digest).
    sandbox: dict[str, str] = Field(default_factory=dict)


class NodeRef(BaseModel):
    id: int
    name: str | None


class SubmitResponse(BaseModel):
    id: int
    kind: str
    nodes: list[NodeRef]
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class BulkResponse(BaseModel):
    jobs: list[SubmitResponse]


async def _read_submission(
    request: Request, services: Services, *, bulk: bool
) -> tuple[list[str], dict[str, str], list[dict[str, str]]]:
    """(JDL texts, shared {entry: digest}, per-JDL {entry: digest}) from JSON or multipart."""
    settings = services.settings
    limit = settings.max_sandbox_job_bytes + settings.max_jdl_bytes * (
        settings.max_nodes if bulk else 1
    )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + _MULTIPART_OVERHEAD:
        raise TooLarge("the submission", int(length), limit)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(
            max_files=10_000, max_fields=settings.max_nodes + 10, max_part_size=limit
        )
        texts: list[str] = []
        uploads: list[tuple[str, Any]] = []
        for key, value in form.multi_items():
            if key == "jdl":
                texts.append(
                    (await value.read()).decode() if isinstance(value, UploadFile) else value
                )
            elif isinstance(value, UploadFile):
                entry = value.filename if key in FILE_FIELDS and value.filename else key
                uploads.append((entry, value.file))
        if not texts:
            raise BadRequest("the multipart submission has no 'jdl' field")
        if not bulk and len(texts) > 1:
            raise BadRequest("one JDL per submission; use POST /api/v1/jobs/bulk for several")
        stored = await anyio.to_thread.run_sync(
            lambda: store_uploads(
                services.store,
                uploads,
                max_file_bytes=settings.max_sandbox_file_bytes,
                max_total_bytes=settings.max_sandbox_job_bytes,
            )
        )
        await form.close()
        return texts, {k: v.digest for k, v in stored.items()}, [{} for _ in texts]
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "send JSON {jdl, sandbox} or multipart/form-data with a 'jdl' field"
        ) from exc
    try:
        if bulk:
            parsed = BulkRequest.model_validate(body)
            return (
                [j.jdl for j in parsed.jobs],
                check_references(services.store, parsed.sandbox),
                [check_references(services.store, j.sandbox) for j in parsed.jobs],
            )
        single = SubmitRequest.model_validate(body)
    except ValueError as exc:
        raise BadRequest(f"malformed submission: {exc}") from exc
    return [single.jdl], {}, [check_references(services.store, single.sandbox)]


def _submit(
    services: Services,
    principal: Principal,
    texts: list[str],
    shared: dict[str, str],
    own: list[dict[str, str]],
) -> list[dict[str, Any]]:
    many = len(texts) > 1
    plans: list[Plan] = []
    total_nodes = 0
    for index, text in enumerate(texts):
        p = plan(
            text,
            owner=principal.user,
            group=principal.group,
            provided={**shared, **own[index]},
            options=services.submit_options,
            filename=f"jdl[{index}]" if many else "<jdl>",
        )
        total_nodes += p.size
        if total_nodes > services.settings.max_nodes:
            raise TooLarge("the bulk request (nodes)", total_nodes, services.settings.max_nodes)
        plans.append(p)
    with services.db.write() as conn:
        results = persist(conn, plans, source=principal.source, blob_exists=services.store.exists)
        queues = (
            services.dispatcher.queues_of(conn, [r["id"] for r in results])
            if services.dispatcher is not None
            else []
        )
    services.jobs_changed(set(queues))
    for p in plans:
        services.metrics.submissions.labels(p.kind.value).inc()
        services.metrics.submitted_nodes.inc(p.size)
    return results


@router.post("", status_code=201, response_model=SubmitResponse)
async def submit_job(
    request: Request, principal: UserPrincipal, services: ServicesDep
) -> JSONResponse:
    """Submit one JDL: JSON ``{jdl, sandbox: {entry: digest}}``, or multipart with a ``jdl``
    field plus one file part per local InputSandbox entry (field name = the entry as written in
    the JDL, or field ``sandbox`` with the entry as file name)."""
    texts, shared, own = await _read_submission(request, services, bulk=False)
    results = await anyio.to_thread.run_sync(_submit, services, principal, texts, shared, own)
    # Built by persist() in the documented shape; re-validating 10,000 node entries through
    # the response model would cost more than storing them.
    return JSONResponse(results[0], status_code=201)


@router.post("/bulk", status_code=201, response_model=BulkResponse)
async def submit_bulk(
    request: Request, principal: UserPrincipal, services: ServicesDep
) -> JSONResponse:
    """Submit many JDLs in one transaction (all accepted or none): JSON ``{jobs: [{jdl,
    sandbox}], sandbox}``, or multipart with several ``jdl`` fields and shared files."""
    texts, shared, own = await _read_submission(request, services, bulk=True)
    results = await anyio.to_thread.run_sync(_submit, services, principal, texts, shared, own)
    return JSONResponse({"jobs": results}, status_code=201)


@router.get("")
def list_jobs(  # noqa: PLR0917 - FastAPI query parameters
    principal: UserPrincipal,
    services: ServicesDep,
    ids: Annotated[str | None, Query(description="Comma-separated job ids")] = None,
    state: Annotated[list[JobState] | None, Query(description="Repeatable")] = None,
    owner: str | None = None,
    parent: int | None = None,
    since: Annotated[datetime | None, Query(description="Submitted at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=bookkeeping.MAX_PAGE)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Jobs in id order, one page at a time (pass ``next_cursor`` back as ``cursor``). Without
    ``ids`` or ``parent`` only top-level jobs are listed."""
    try:
        id_list = [int(x) for x in ids.split(",") if x.strip()] if ids else []
    except ValueError as exc:
        raise BadRequest("ids must be comma-separated integers") from exc
    flt = bookkeeping.JobFilter(
        ids=id_list,
        states=state or [],
        owner=owner,
        parent=parent,
        since=since,
        limit=limit,
        cursor=cursor,
    )
    with services.db.read() as conn:
        return bookkeeping.list_jobs(conn, flt, principal, services.shared_groups)


@router.get("/{job_id}")
def get_job(
    job_id: int, principal: UserPrincipal, services: ServicesDep, nodes: bool = True
) -> dict[str, Any]:
    """One job; a compound job also has ``children`` (counts per state), ``nodes`` and, for a
    DAG, ``edges`` (``nodes=false`` leaves out the node list)."""
    with services.db.read() as conn:
        return bookkeeping.job_status(
            conn, job_id, principal, services.shared_groups, with_nodes=nodes
        )


@router.get("/{job_id}/events")
def get_events(job_id: int, principal: UserPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The event history (logging info) of a job, oldest first."""
    with services.db.read() as conn:
        events = bookkeeping.job_events_of(conn, job_id, principal, services.shared_groups)
    return {"id": job_id, "events": events}


@router.post("/{job_id}/cancel")
def cancel_job(job_id: int, principal: UserPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Cancel a job, or every unfinished node of a compound job. Jobs a pilot holds are
    listed in ``cancel_requested``: their pilot kills them and reports them CANCELLED."""
    with services.db.write() as conn:
        result = cancellation.cancel_job(conn, job_id, principal, services.shared_groups)
        queues = (
            services.dispatcher.queues_of(conn, result["cancelled"] + result.get("released", []))
            if services.dispatcher is not None
            else []
        )
    services.jobs_changed(set(queues))
    return result


@router.post("/{job_id}/resubmit")
def resubmit_job(job_id: int, principal: UserPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Run again what failed in a finished job (HTCondor's rescue DAG): every node of a DAG,
    collection or parametric job that did not end DONE with exit code 0, DAG descendants
    included, or a failed normal job. Kept nodes keep their output; re-run ones keep their id
    and history. ``resubmitted``: the ids that run again, ``released``: those already WAITING
    (the others wait for their parents or for ``max_nodes_running``), ``kept``: nodes left as
    they were. 409 when the job is unfinished, succeeded, purged or a node."""
    period = services.submit_options.expiry_period
    with services.db.write() as conn:
        result = rescue.resubmit_job(
            conn, job_id, principal, services.shared_groups, expiry_period=period
        )
    services.jobs_changed(set(result.pop("tq_ids")))
    return result


@router.get("/{job_id}/jdl", response_class=PlainTextResponse)
def get_jdl(
    job_id: int,
    principal: UserPrincipal,
    services: ServicesDep,
    form: Annotated[str, Query(pattern="^(submitted|expanded)$")] = "expanded",
) -> str:
    """The JDL as submitted, or as expanded with the defaults applied (the default)."""
    with services.db.read() as conn:
        return bookkeeping.job_jdl(conn, job_id, principal, services.shared_groups, form)
