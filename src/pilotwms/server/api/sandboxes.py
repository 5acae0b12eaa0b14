"""Sandbox file routes: upload once (raw body), check, download by sha256 digest.

Any valid token may use them: users upload input files before a submission that refers to them
by digest, pilots fetch input files and upload output files. Knowing a digest means knowing the
content it was computed from, so these routes reveal nothing a caller does not have.
"""

from __future__ import annotations

import tempfile
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from pilotwms.core.errors import BlobNotFound, TooLarge
from pilotwms.server.api.policy import AnyPrincipal
from pilotwms.server.api.services import ServicesDep
from pilotwms.server.blobstore import validate_digest

router = APIRouter(prefix="/api/v1/sandboxes", tags=["sandboxes"])


@router.post("", status_code=201)
async def upload_blob(
    request: Request,
    principal: AnyPrincipal,
    services: ServicesDep,
    digest: str | None = None,
) -> dict[str, Any]:
    """Store the request body; returns ``{digest, size}``. With ``?digest=`` the content must
    hash to it (a corrupted upload is refused)."""
    limit = services.settings.max_sandbox_file_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge("the sandbox file", int(length), limit)
    # Spool the body (memory, then disk past 8 MiB) so that hashing and storing run in a
    # worker thread without holding the event loop.
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise TooLarge("the sandbox file", received, limit)
            spool.write(chunk)
        spool.seek(0)
        info = await anyio.to_thread.run_sync(
            lambda: services.store.put(
                spool,  # type: ignore[arg-type]
                max_size=limit,
                expected_digest=digest,
            )
        )
    finally:
        spool.close()
    return {"digest": info.digest, "size": info.size}


@router.head("/{digest}")
def blob_exists(digest: str, principal: AnyPrincipal, services: ServicesDep) -> Response:
    """200 with Content-Length when stored, 404 otherwise."""
    digest = validate_digest(digest)
    if not services.store.exists(digest):
        raise BlobNotFound(digest)
    return Response(headers={"Content-Length": str(services.store.size(digest))})


@router.get("/{digest}")
def download_blob(digest: str, principal: AnyPrincipal, services: ServicesDep) -> Response:
    digest = validate_digest(digest)
    local = services.store.local_path(digest)
    if local is not None:
        return FileResponse(local, media_type="application/octet-stream")
    stream = services.store.open(digest)
    return StreamingResponse(
        iter(lambda: stream.read(1024 * 1024), b""),
        media_type="application/octet-stream",
        background=BackgroundTask(stream.close),
    )
