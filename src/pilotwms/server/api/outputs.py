"""Output sandbox routes: list, one file, everything as tar.gz; ``?clear=true`` clears the job
(DONE -> CLEARED, gLite's behaviour after the user retrieved the output)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from pilotwms.core.archives import write_tar_gz
from pilotwms.server.api.policy import UserPrincipal
from pilotwms.server.api.services import Services, ServicesDep
from pilotwms.server.logic import output

router = APIRouter(prefix="/api/v1/jobs", tags=["output"])


def _clear(services: Services, job_id: int, principal: Any) -> None:
    with services.db.write() as conn:
        output.clear_output(conn, job_id, principal, services.shared_groups)


@router.get("/{job_id}/output")
def list_output(
    job_id: int, principal: UserPrincipal, services: ServicesDep, clear: bool = False
) -> dict[str, Any]:
    """The output files (``node/name`` for the nodes of a compound job)."""
    with services.db.read() as conn:
        files = output.output_files(conn, job_id, principal, services.shared_groups)
    if clear:
        _clear(services, job_id, principal)
    return {"id": job_id, "files": output.outputs_summary(files)}


@router.get("/{job_id}/output.tar.gz")
def download_output_archive(
    job_id: int, principal: UserPrincipal, services: ServicesDep, clear: bool = False
) -> Response:
    """Every output file in one tar.gz (one folder per node for a compound job)."""
    with services.db.read() as conn:
        files = output.output_files(conn, job_id, principal, services.shared_groups)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - removed after the response is sent
        prefix="pilotwms-output-", suffix=".tar.gz", delete=False
    )
    try:
        with handle:
            write_tar_gz(cast(BinaryIO, handle), _members(services, files))
    except BaseException:
        os.unlink(handle.name)
        raise
    if clear:
        _clear(services, job_id, principal)
    return FileResponse(
        handle.name,
        media_type="application/gzip",
        filename=f"job_{job_id}_output.tar.gz",
        background=BackgroundTask(os.unlink, handle.name),
    )


def _members(
    services: Services, files: list[output.OutputFile]
) -> Iterator[tuple[str, tuple[BinaryIO, int]]]:
    """Archive members opened one at a time (a compound job may have thousands of files)."""
    for f in files:
        with services.store.open(f.digest) as stream:
            yield f.path, (stream, f.size)


@router.get("/{job_id}/output/{name:path}")
def download_output_file(
    job_id: int, name: str, principal: UserPrincipal, services: ServicesDep, clear: bool = False
) -> Response:
    """One output file by its name in the listing."""
    with services.db.read() as conn:
        item = output.output_file(conn, job_id, name, principal, services.shared_groups)
    local = services.store.local_path(item.digest)
    if clear:
        _clear(services, job_id, principal)
    filename = item.name.rsplit("/", 1)[-1]
    if local is not None:
        return FileResponse(local, media_type="application/octet-stream", filename=filename)
    stream = services.store.open(item.digest)
    return StreamingResponse(
        iter(lambda: stream.read(1024 * 1024), b""),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        background=BackgroundTask(stream.close),
    )
