"""Public routes: health, version, Prometheus metrics.

They carry no user data; a load balancer and Prometheus call them without a token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import text

from pilotwms import __version__
from pilotwms.server.api.policy import PUBLIC
from pilotwms.server.api.services import ServicesDep
from pilotwms.server.db.migrate import head_revision
from pilotwms.server.metrics import CONTENT_TYPE

router = APIRouter(tags=["system"])


@router.get("/api/v1/health", dependencies=[PUBLIC])
def health(services: ServicesDep) -> dict[str, Any]:
    """200 when the server can reach its database (503 with Retry-After otherwise)."""
    with services.db.read() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ok", "database": services.db.dialect}


@router.get("/api/v1/version", dependencies=[PUBLIC])
def version(services: ServicesDep) -> dict[str, Any]:
    """The server's version, its API and schema, and the version of the agent it serves."""
    return {
        "version": __version__,
        "api": "v1",
        "schema": head_revision(),
        "agent_version": services.agent_version,
    }


@router.get("/metrics", dependencies=[PUBLIC], include_in_schema=False)
def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
