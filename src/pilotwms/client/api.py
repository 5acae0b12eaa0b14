"""The :class:`Client`: one authenticated HTTP session with a pilotwms server.

It turns every failure into a :class:`ClientError` subclass (never an ``httpx`` exception),
retries idempotent reads a few times when the server says it is briefly unavailable (503 with
``Retry-After``), and uploads each input sandbox file at most once: files are offered by digest
(``HEAD /api/v1/sandboxes/{digest}``) and sent only when the server lacks them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

import httpx

from pilotwms import __version__
from pilotwms.client.config import DEFAULT_TIMEOUT_S, ClientConfig
from pilotwms.client.errors import (
    ClientError,
    JDLRejected,
    NotFoundError,
    ServerUnavailable,
    error_from_response,
)
from pilotwms.client.jobs import Compound, Job
from pilotwms.client.models import JobStatus, MatchResult, Pilot, SubmitResult, UploadProgress
from pilotwms.client.submission import JDLSource, LocalFile, Prepared, prepare

__all__ = ["Client", "ProgressCallback"]

ProgressCallback = Callable[[UploadProgress], None]
JDLInput = str | os.PathLike[str] | JDLSource
FileMap = Mapping[str, str | os.PathLike[str] | bytes]

_READ_RETRIES = 3
_MAX_RETRY_WAIT_S = 5.0
_PAGE = 500


class Client:
    """A session with the server at ``url`` authenticated by ``token``.

    ``verify`` is passed to httpx (``False``, or the path of a CA bundle for a private CA);
    ``transport`` lets tests plug in an ``httpx`` transport. Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers=session_headers(token),
            verify=verify,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_config(cls, env: Mapping[str, str] | None = None) -> Client:
        """A client configured by ``client.toml`` and ``PILOTWMS_URL``/``PILOTWMS_TOKEN``;
        raises :class:`ConfigError` naming the file and the variables when nothing is set."""
        config = ClientConfig.load(env)
        url, token = config.require()
        return cls(url, token, verify=config.verify, timeout=config.timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- HTTP ------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, filename: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request; a non-2xx answer raises the matching :class:`ClientError`."""
        attempts = _READ_RETRIES if method in ("GET", "HEAD") else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                raise ServerUnavailable(f"{self.url} did not answer in time ({exc})") from exc
            except httpx.TransportError as exc:
                raise ServerUnavailable(f"cannot reach {self.url}: {exc}") from exc
            if response.is_success:
                return response
            error = error_from_response(response, filename=filename)
            if (
                not isinstance(error, ServerUnavailable)
                or error.retry_after is None
                or attempt == attempts - 1
            ):
                raise error
            time.sleep(min(error.retry_after, _MAX_RETRY_WAIT_S))
        raise AssertionError("unreachable")

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = self.request("GET", path, params=params).json()
        if not isinstance(body, dict):
            raise ClientError(f"GET {path}: the server answered {type(body).__name__}, not JSON")
        return body

    def post_json(self, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        answer = self.request("POST", path, json=body, **kwargs).json()
        if not isinstance(answer, dict):
            raise ClientError(f"POST {path}: the server answered {type(answer).__name__}")
        return answer

    def get_text(self, path: str, *, params: Mapping[str, Any] | None = None) -> str:
        return self.request("GET", path, params=params).text

    def download(
        self, path: str, out: IO[bytes], *, params: Mapping[str, Any] | None = None
    ) -> int:
        """Stream ``path`` into ``out``; return the bytes written."""
        written = 0
        try:
            with self._http.stream("GET", path, params=params) as response:
                if not response.is_success:
                    response.read()
                    raise error_from_response(response)
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"download of {path} from {self.url} failed: {exc}") from exc
        return written

    # -- server ----------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return self.get_json("/api/v1/version")

    def health(self) -> dict[str, Any]:
        return self.get_json("/api/v1/health")

    # -- sandboxes -------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """Whether the server stores a sandbox file with this sha256 digest."""
        try:
            self.request("HEAD", f"/api/v1/sandboxes/{digest}")
        except NotFoundError:
            return False
        return True

    def upload_files(
        self, files: Iterable[LocalFile], progress: ProgressCallback | None = None
    ) -> dict[str, str]:
        """Make sure the server has every file; return ``{entry: digest}``.

        A digest is checked and sent once, however many entries or jobs share it.
        """
        unique: dict[str, LocalFile] = {}
        mapping: dict[str, str] = {}
        for f in files:
            unique.setdefault(f.digest, f)
            mapping[f.entry] = f.digest
        total = sum(f.size for f in unique.values())
        sent_total = 0
        for digest, f in unique.items():
            if self.has_blob(digest):
                sent_total += f.size
                if progress is not None:
                    progress(UploadProgress(f.entry, f.size, f.size, sent_total, total, True))
                continue
            sent = 0

            def body(f: LocalFile = f) -> Iterator[bytes]:
                nonlocal sent, sent_total
                for chunk in f.chunks():
                    yield chunk
                    sent += len(chunk)
                    sent_total += len(chunk)
                    if progress is not None:
                        progress(UploadProgress(f.entry, sent, f.size, sent_total, total))

            self.request(
                "POST",
                "/api/v1/sandboxes",
                params={"digest": digest},
                content=body(),
                headers={
                    "Content-Length": str(f.size),
                    "Content-Type": "application/octet-stream",
                },
            )
            if f.size == 0 and progress is not None:
                progress(UploadProgress(f.entry, 0, 0, sent_total, total))
        return mapping

    # -- submission ------------------------------------------------------------------------

    def prepare(
        self,
        jdl: JDLInput,
        files: FileMap | None = None,
        *,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> Prepared:
        """Check a submission locally without sending it (see :func:`submission.prepare`)."""
        return prepare(jdl, files, base_dir=base_dir)

    def _handle(self, result: SubmitResult) -> Job | Compound:
        job: Job | Compound
        if result.kind == "job":
            job = Job(self, result.id)
        else:
            job = Compound(self, result.id, result.kind, result.nodes)
        job.warnings = list(result.warnings)
        return job

    def submit(
        self,
        jdl: JDLInput,
        files: FileMap | None = None,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> Job | Compound:
        """Submit a JDL file (a path), a JDL text or a :class:`JobDescription`.

        Local InputSandbox entries are found relative to the JDL's directory (``base_dir``
        otherwise; ``files`` maps entries to other paths or to bytes) and uploaded unless the
        server has them already; ``progress`` is called as they go. Returns a :class:`Job`, or
        a :class:`Compound` for a parametric job, collection or DAG. Raises
        :class:`JDLRejected` for a bad JDL (found here or by the server).
        """
        return self.submit_prepared(prepare(jdl, files, base_dir=base_dir), progress=progress)

    def submit_prepared(
        self, prepared: Prepared, *, progress: ProgressCallback | None = None
    ) -> Job | Compound:
        """Upload what the server lacks and submit; see :meth:`submit`."""
        sandbox = self.upload_files(prepared.files, progress)
        try:
            data = self.post_json("/api/v1/jobs", {"jdl": prepared.jdl, "sandbox": sandbox})
        except JDLRejected as exc:
            raise located(exc, prepared) from None
        return self._handle(SubmitResult.from_json(data))

    def submit_bulk(
        self,
        items: Sequence[JDLInput],
        *,
        base_dir: str | os.PathLike[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Job | Compound]:
        """Submit many JDLs in one transaction (all accepted or none); shared files go once."""
        prepared = [prepare(item, base_dir=base_dir) for item in items]
        self.upload_files([f for p in prepared for f in p.files], progress)
        # By each JDL's own digests: two JDLs may name different files with the same entry.
        jobs = [{"jdl": p.jdl, "sandbox": {f.entry: f.digest for f in p.files}} for p in prepared]
        try:
            data = self.post_json("/api/v1/jobs/bulk", {"jobs": jobs})
        except JDLRejected as exc:
            index = bulk_index(exc)
            if index is not None and 0 <= index < len(prepared):
                raise located(exc, prepared[index]) from None
            raise
        return [self._handle(SubmitResult.from_json(j)) for j in data.get("jobs") or []]

    # -- jobs ------------------------------------------------------------------------------

    def job(self, job_id: int | str) -> Job | Compound:
        """A handle on an existing job (one request: raises :class:`NotFoundError` early)."""
        status = JobStatus.from_json(
            self.get_json(f"/api/v1/jobs/{job_id_of(job_id)}", params={"nodes": "false"})
        )
        if status.compound:
            return Compound(self, status.id, status.kind)
        return Job(self, status.id, status.node_name)

    def jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        parent: int | None = None,
        since: datetime | None = None,
        owner: str | None = None,
        ids: Sequence[int] | None = None,
        page_size: int = _PAGE,
    ) -> Iterator[JobStatus]:
        """Every job matching the filters, following the server's pages (top-level jobs only
        unless ``parent`` or ``ids`` is given). ``state`` may be a list (any of them)."""
        params = job_filter_params(
            state=state, parent=parent, since=since, owner=owner, ids=ids, page_size=page_size
        )
        while True:
            page = self.get_json("/api/v1/jobs", params=params)
            for item in page.get("jobs") or []:
                yield JobStatus.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    # -- resources -------------------------------------------------------------------------

    def list_match(
        self, jdl: JDLInput, *, base_dir: str | os.PathLike[str] | None = None
    ) -> MatchResult:
        """Where the job could run (best Rank first) and, elsewhere, the clauses that failed.
        Nothing is submitted and no file is uploaded."""
        prepared = prepare(jdl, base_dir=base_dir, with_sandbox=False)
        try:
            data = self.post_json("/api/v1/jobs/list-match", {"jdl": prepared.jdl})
        except JDLRejected as exc:
            raise located(exc, prepared) from None
        return MatchResult.from_json(data)

    def pilots(self, *, state: str | Sequence[str] | None = None) -> list[Pilot]:
        """The pilots, newest first (``state``: submitted, queued, running, idle, draining,
        finished, failed)."""
        params: dict[str, Any] = {}
        if state is not None:
            params["state"] = [state] if isinstance(state, str) else list(state)
        data = self.get_json("/api/v1/pilots", params=params)
        return [Pilot.from_json(p) for p in data.get("pilots") or []]

    def resources(self, constraint: str | None = None) -> list[dict[str, Any]]:
        """Live pilots and factory queues whose ad satisfies the ClassAd ``constraint``."""
        params = {"constraint": constraint} if constraint else None
        data = self.get_json("/api/v1/resources", params=params)
        return [r for r in data.get("resources") or [] if isinstance(r, dict)]

    # -- rescue ----------------------------------------------------------------------------

    def resubmit(self, job_id: int | str) -> dict[str, Any]:
        """Run again what failed in a finished job: the nodes of a DAG, collection or
        parametric job that did not end DONE with exit code 0 (with a DAG's descendants of
        them), or a failed normal job. Returns ``{id, resubmitted, released, kept}`` (the ids
        that run again, those already WAITING, how many nodes were kept); raises
        :class:`ConflictError` for an unfinished or fully successful job."""
        return self.post_json(f"/api/v1/jobs/{job_id_of(job_id)}/resubmit")

    # -- pilot logs ------------------------------------------------------------------------

    def pilot_log(self, pilot_id: int | str, stream: str = "stdout") -> str:
        """A pilot's own ``stdout`` or ``stderr`` as the pilot factory stored it (its last MiB;
        a first line says when the beginning was cut off). Raises :class:`NotFoundError` when
        none is stored."""
        if stream not in ("stdout", "stderr"):
            raise ClientError(f"stream {stream!r}: a pilot log is 'stdout' or 'stderr'")
        return self.get_text(f"/api/v1/pilots/{pilot_id}/log", params={"stream": stream})


def session_headers(token: str) -> dict[str, str]:
    """The headers of every request: the bearer token and who is asking (for server logs)."""
    return {"Authorization": f"Bearer {token}", "User-Agent": f"pilotwms-client/{__version__}"}


def job_filter_params(
    *,
    state: str | Sequence[str] | None,
    parent: int | None,
    since: datetime | None,
    owner: str | None,
    ids: Sequence[int] | None,
    page_size: int,
) -> dict[str, Any]:
    """The query of ``GET /api/v1/jobs`` for these filters (shared with the async client)."""
    params: dict[str, Any] = {"limit": page_size}
    if state is not None:
        params["state"] = [state] if isinstance(state, str) else list(state)
    if parent is not None:
        params["parent"] = parent
    if since is not None:
        params["since"] = since.isoformat()
    if owner is not None:
        params["owner"] = owner
    if ids:
        params["ids"] = ",".join(str(i) for i in ids)
    return params


def job_id_of(value: int | str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ClientError(f"{value!r} is not a job id (a number)") from None


def located(exc: JDLRejected, prepared: Prepared) -> JDLRejected:
    """The server's JDL error re-labelled with the user's file name and the text it refers to."""
    inlined = prepared.jdl != prepared.source
    exc.filename = prepared.filename + (" (node files inlined)" if inlined else "")
    exc.source = prepared.jdl
    return exc


def bulk_index(exc: JDLRejected) -> int | None:
    name = str(exc.problem.get("filename") or "")
    if name.startswith("jdl[") and name.endswith("]"):
        try:
            return int(name[4:-1])
        except ValueError:
            return None
    return None
