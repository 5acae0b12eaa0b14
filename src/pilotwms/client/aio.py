"""The asynchronous client, for programs that follow many jobs from one event loop.

:class:`AsyncClient` mirrors :class:`pilotwms.client.Client` for the calls a monitoring loop
makes: submission (with the same local checks and upload-once sandbox), status, listing,
waiting, cancel, resubmit, events, output, list-match and pilots. Local work that is not HTTP
(reading and hashing sandbox files, extracting an output archive) runs in a worker thread so
that it does not hold the loop.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from pilotwms.client.api import (
    FileMap,
    JDLInput,
    ProgressCallback,
    job_filter_params,
    job_id_of,
    located,
    session_headers,
)
from pilotwms.client.config import DEFAULT_TIMEOUT_S, ClientConfig
from pilotwms.client.errors import (
    ClientError,
    JDLRejected,
    NotFoundError,
    ServerUnavailable,
    WaitTimeout,
    error_from_response,
)
from pilotwms.client.jobs import backoff_intervals
from pilotwms.client.models import (
    CancelResult,
    JobEvent,
    JobStatus,
    MatchResult,
    OutputFile,
    Pilot,
    SubmitResult,
    UploadProgress,
)
from pilotwms.client.submission import LocalFile, Prepared, prepare
from pilotwms.core.archives import extract_tar_gz
from pilotwms.core.errors import PilotWMSError

__all__ = ["AsyncClient", "AsyncJob"]

_PAGE = 500
_CHUNK = 1024 * 1024
_DIR_SLACK = 1000


class AsyncJob:
    """An asynchronous handle on a job (``kind`` and ``nodes`` set for a compound job)."""

    def __init__(
        self,
        client: AsyncClient,
        job_id: int,
        *,
        name: str | None = None,
        kind: str = "job",
        nodes: list[tuple[int, str | None]] | None = None,
    ) -> None:
        self.client = client
        self.id = int(job_id)
        self.name = name
        self.kind = kind
        self.node_ids = nodes

    def __repr__(self) -> str:
        return f"AsyncJob(id={self.id}, kind={self.kind!r})"

    async def status(self, *, nodes: bool = True) -> JobStatus:
        params = None if nodes else {"nodes": "false"}
        data = await self.client.get_json(f"/api/v1/jobs/{self.id}", params=params)
        return JobStatus.from_json(data)

    async def wait(self, timeout: float | None = None, poll: float = 10.0) -> JobStatus:
        """As :meth:`Job.wait`: the final status, or :class:`WaitTimeout` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = backoff_intervals(poll)
        last: JobStatus | None = None
        while True:
            try:
                last = await self.status(nodes=False)
            except ServerUnavailable:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            else:
                if last.finished:
                    return last
            sleep = interval()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    state = last.state if last is not None else "unknown"
                    raise WaitTimeout(f"job {self.id} still {state} after {timeout:g}s", last)
                sleep = min(sleep, left)
            await asyncio.sleep(sleep)

    async def events(self) -> list[JobEvent]:
        data = await self.client.get_json(f"/api/v1/jobs/{self.id}/events")
        return [JobEvent.from_json(e) for e in data.get("events") or []]

    async def cancel(self) -> CancelResult:
        return CancelResult.from_json(await self.client.post_json(f"/api/v1/jobs/{self.id}/cancel"))

    async def jdl(self, form: str = "expanded") -> str:
        response = await self.client.request(
            "GET", f"/api/v1/jobs/{self.id}/jdl", params={"form": form}
        )
        return response.text

    async def output_files(self) -> list[OutputFile]:
        data = await self.client.get_json(f"/api/v1/jobs/{self.id}/output")
        return [OutputFile.from_json(f) for f in data.get("files") or []]

    async def output(self, directory: str | os.PathLike[str], *, clear: bool = False) -> list[Path]:
        """Download the output tar.gz and extract it with the archive safety rules."""
        dest = Path(directory)
        listing = await self.output_files()
        params = {"clear": "true"} if clear else None
        with tempfile.TemporaryFile() as spool:
            await self.client.download(f"/api/v1/jobs/{self.id}/output.tar.gz", spool, params)
            spool.seek(0)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                names = await asyncio.to_thread(
                    extract_tar_gz,
                    spool,
                    dest,
                    max_members=2 * len(listing) + _DIR_SLACK,
                    max_total_size=sum(f.size for f in listing) + 1,
                )
            except PilotWMSError as exc:
                raise ClientError(f"output of job {self.id}: {exc.message}") from exc
        return [dest / n for n in names if (dest / n).is_file()]

    async def nodes(self) -> list[AsyncJob]:
        """The nodes of a compound job (empty for a single job)."""
        if self.node_ids is None:
            self.node_ids = [(n.id, n.name) for n in (await self.status()).nodes]
        return [AsyncJob(self.client, i, name=name) for i, name in self.node_ids]


class AsyncClient:
    """An asynchronous session with the server; use with ``async with``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=session_headers(token),
            verify=verify,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_config(cls, env: Mapping[str, str] | None = None) -> AsyncClient:
        config = ClientConfig.load(env)
        url, token = config.require()
        return cls(url, token, verify=config.verify, timeout=config.timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a non-2xx answer raises the matching :class:`ClientError`."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnavailable(f"{self.url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self.url}: {exc}") from exc
        if not response.is_success:
            raise error_from_response(response)
        return response

    async def get_json(
        self, path: str, *, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = (await self.request("GET", path, params=params)).json()
        if not isinstance(body, dict):
            raise ClientError(f"GET {path}: the server answered {type(body).__name__}, not JSON")
        return body

    async def post_json(self, path: str, body: Any = None) -> dict[str, Any]:
        answer = (await self.request("POST", path, json=body)).json()
        if not isinstance(answer, dict):
            raise ClientError(f"POST {path}: the server answered {type(answer).__name__}")
        return answer

    async def download(self, path: str, out: Any, params: Mapping[str, Any] | None = None) -> int:
        written = 0
        try:
            async with self._http.stream("GET", path, params=params) as response:
                if not response.is_success:
                    await response.aread()
                    raise error_from_response(response)
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
                    written += len(chunk)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"download of {path} from {self.url} failed: {exc}") from exc
        return written

    async def has_blob(self, digest: str) -> bool:
        try:
            await self.request("HEAD", f"/api/v1/sandboxes/{digest}")
        except NotFoundError:
            return False
        return True

    async def upload_files(
        self, files: Sequence[LocalFile], progress: ProgressCallback | None = None
    ) -> None:
        """Upload the files the server lacks, each digest once."""
        unique: dict[str, LocalFile] = {}
        for f in files:
            unique.setdefault(f.digest, f)
        total = sum(f.size for f in unique.values())
        done = 0
        for digest, f in unique.items():
            skipped = await self.has_blob(digest)
            if not skipped:
                await self.request(
                    "POST",
                    "/api/v1/sandboxes",
                    params={"digest": digest},
                    content=_chunks(f),
                    headers={
                        "Content-Length": str(f.size),
                        "Content-Type": "application/octet-stream",
                    },
                )
            done += f.size
            if progress is not None:
                progress(UploadProgress(f.entry, f.size, f.size, done, total, skipped))

    async def submit(
        self,
        jdl: JDLInput,
        files: FileMap | None = None,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> AsyncJob:
        """As :meth:`Client.submit`; a compound job's handle has ``kind`` and its nodes."""
        prepared: Prepared = await asyncio.to_thread(prepare, jdl, files, base_dir=base_dir)
        await self.upload_files(prepared.files, progress)
        body = {"jdl": prepared.jdl, "sandbox": {f.entry: f.digest for f in prepared.files}}
        try:
            data = await self.post_json("/api/v1/jobs", body)
        except JDLRejected as exc:
            raise located(exc, prepared) from None
        result = SubmitResult.from_json(data)
        return AsyncJob(self, result.id, kind=result.kind, nodes=result.nodes or None)

    async def job(self, job_id: int | str) -> AsyncJob:
        data = await self.get_json(f"/api/v1/jobs/{job_id_of(job_id)}", params={"nodes": "false"})
        status = JobStatus.from_json(data)
        return AsyncJob(self, status.id, name=status.node_name, kind=status.kind)

    async def jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        parent: int | None = None,
        since: datetime | None = None,
        owner: str | None = None,
        ids: Sequence[int] | None = None,
        page_size: int = _PAGE,
    ) -> AsyncIterator[JobStatus]:
        """Every job matching the filters, page after page."""
        params = job_filter_params(
            state=state, parent=parent, since=since, owner=owner, ids=ids, page_size=page_size
        )
        while True:
            page = await self.get_json("/api/v1/jobs", params=params)
            for item in page.get("jobs") or []:
                yield JobStatus.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    async def list_match(self, jdl: JDLInput) -> MatchResult:
        prepared = await asyncio.to_thread(prepare, jdl, None, with_sandbox=False)
        try:
            data = await self.post_json("/api/v1/jobs/list-match", {"jdl": prepared.jdl})
        except JDLRejected as exc:
            raise located(exc, prepared) from None
        return MatchResult.from_json(data)

    async def pilots(self, *, state: str | Sequence[str] | None = None) -> list[Pilot]:
        params: dict[str, Any] = {}
        if state is not None:
            params["state"] = [state] if isinstance(state, str) else list(state)
        data = await self.get_json("/api/v1/pilots", params=params)
        return [Pilot.from_json(p) for p in data.get("pilots") or []]

    async def resubmit(self, job_id: int | str) -> dict[str, Any]:
        """See :meth:`pilotwms.client.Client.resubmit`."""
        return await self.post_json(f"/api/v1/jobs/{job_id_of(job_id)}/resubmit")


async def _chunks(f: LocalFile) -> AsyncIterator[bytes]:
    """The file's content in 1 MiB chunks, read in a worker thread (never all in memory)."""
    if f.data is not None:
        yield f.data
        return
    assert f.path is not None
    handle = await asyncio.to_thread(f.path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            yield chunk
    finally:
        handle.close()
