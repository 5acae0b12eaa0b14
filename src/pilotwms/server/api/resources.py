"""The resource registry (live pilots and factory queues, filtered by a ClassAd constraint),
the factory's queue publication, and list-match ("where could my job run, and why not")."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from pilotwms.core.errors import BadRequest
from pilotwms.server.api.policy import AdminPrincipal, UserPrincipal
from pilotwms.server.api.services import ServicesDep
from pilotwms.server.logic import registry

router = APIRouter(tags=["resources"])


class QueueAd(BaseModel):
    """A factory queue's static ad, in the slot-ad JSON form (``{"expr": ...}`` for
    expressions)."""

    ad: dict[str, Any] = Field(default_factory=dict)


@router.get("/api/v1/resources")
def list_resources(
    principal: UserPrincipal,
    services: ServicesDep,
    constraint: Annotated[
        str | None, Query(description="ClassAd expression evaluated against each resource ad")
    ] = None,
) -> dict[str, Any]:
    """Live pilots and factory queues whose ad satisfies ``constraint``."""
    expr = registry.parse_constraint(constraint)
    with services.db.read() as conn:
        items = registry.all_resources(conn)
    selected = registry.select_resources(items, expr)
    return {"resources": [registry.resource_summary(r) for r in selected]}


@router.put("/api/v1/admin/queues/{name}")
def put_queue(
    name: str, body: QueueAd, principal: AdminPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Publish or replace the static ad of a factory queue."""
    with services.db.write() as conn:
        registry.put_queue(conn, name, body.ad)
    return {"name": name, "ad": body.ad}


async def _jdl_of(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        value = form.get("jdl")
        text = (await value.read()).decode() if isinstance(value, UploadFile) else value
        await form.close()
        if not isinstance(text, str):
            raise BadRequest("the multipart request has no 'jdl' field")
        return text
    raw = await request.body()
    if content_type.startswith("text/"):
        return raw.decode()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("send JSON {jdl} or multipart/form-data with a 'jdl' field") from exc
    if not isinstance(body, dict) or not isinstance(body.get("jdl"), str):
        raise BadRequest("send JSON {jdl} or multipart/form-data with a 'jdl' field")
    return str(body["jdl"])


@router.post("/api/v1/jobs/list-match")
async def list_match(
    request: Request, principal: UserPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """The pilots and queues a JDL matches (with their Rank), and for every other one the
    checks and Requirements clauses that failed. Nothing is submitted."""
    text = await _jdl_of(request)

    def explain() -> dict[str, Any]:
        job = registry.job_queue_of(text, principal.group, services.submit_options)
        with services.db.read() as conn:
            items = registry.all_resources(conn)
        return registry.list_match(job, items)

    return await anyio.to_thread.run_sync(explain)
