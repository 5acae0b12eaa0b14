"""Handles on submitted jobs: :class:`Job` for a single job (or a node), :class:`Compound` for a
parametric job, collection or DAG.

A handle holds only the id and the client; every method asks the server, so a handle made from
an id typed by a user is as good as one returned by ``submit``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pilotwms.client.errors import ClientError, ConflictError, ServerUnavailable, WaitTimeout
from pilotwms.client.models import CancelResult, JobEvent, JobStatus, OutputFile, StdoutTail
from pilotwms.core.archives import extract_tar_gz
from pilotwms.core.errors import PilotWMSError

if TYPE_CHECKING:
    from pilotwms.client.api import Client

__all__ = ["Compound", "Job", "backoff_intervals"]

#: First interval of ``wait``'s polling; it grows by half each time up to ``poll``.
FIRST_POLL_S = 0.25
_DIR_SLACK = 1000


def backoff_intervals(poll: float, first: float = FIRST_POLL_S) -> Callable[[], float]:
    """A function giving the next sleep: ``first``, growing x1.5 per call, capped at ``poll``.

    Short jobs are seen finishing quickly; long ones cost the server one request per ``poll``.
    """
    current = min(first, poll)

    def step() -> float:
        nonlocal current
        value = current
        current = min(current * 1.5, poll)
        return value

    return step


class Job:
    """A job the server knows by ``id`` (``name`` is the node name of a compound job's node)."""

    def __init__(self, client: Client, job_id: int, name: str | None = None) -> None:
        self.client = client
        self.id = int(job_id)
        self.name = name
        #: The JDL warnings the server returned with the submission (misspelt attributes...).
        self.warnings: list[Mapping[str, Any]] = []

    def __repr__(self) -> str:
        named = f", name={self.name!r}" if self.name else ""
        return f"{type(self).__name__}(id={self.id}{named})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other.client is self.client

    def __hash__(self) -> int:
        return hash(self.id)

    def status(self, *, nodes: bool = True) -> JobStatus:
        """The current status (a compound job's with its node counts, and its nodes unless
        ``nodes`` is false)."""
        params = None if nodes else {"nodes": "false"}
        return JobStatus.from_json(self.client.get_json(f"/api/v1/jobs/{self.id}", params=params))

    def wait(
        self,
        timeout: float | None = None,
        poll: float = 10.0,
        *,
        on_update: Callable[[JobStatus], None] | None = None,
    ) -> JobStatus:
        """Poll until the job finished (DONE, ABORTED, CANCELLED, CLEARED, PURGED); return the
        final status. Polls start fast and back off to one every ``poll`` seconds; a server
        that is briefly unavailable is waited for. Raises :class:`WaitTimeout` (a
        ``TimeoutError``) after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = backoff_intervals(poll)
        last: JobStatus | None = None
        while True:
            try:
                last = self.status(nodes=False)
            except ServerUnavailable:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            else:
                if on_update is not None:
                    on_update(last)
                if last.finished:
                    return last
            sleep = interval()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    state = last.state if last is not None else "unknown"
                    raise WaitTimeout(f"job {self.id} still {state} after {timeout:g}s", last=last)
                sleep = min(sleep, left)
            time.sleep(sleep)

    def events(self) -> list[JobEvent]:
        """The event history, oldest first (gLite's logging-info)."""
        data = self.client.get_json(f"/api/v1/jobs/{self.id}/events")
        return [JobEvent.from_json(e) for e in data.get("events") or []]

    def cancel(self) -> CancelResult:
        """Cancel the job (every unfinished node of a compound job); raises
        :class:`ConflictError` when nothing is left to cancel."""
        return CancelResult.from_json(self.client.post_json(f"/api/v1/jobs/{self.id}/cancel"))

    def stdout_tail(self) -> StdoutTail:
        """The last stdout tail the job's pilot sent, without asking for a new one."""
        data = self.client.get_json(f"/api/v1/jobs/{self.id}/peek")
        attempt = data.get("attempt")
        return StdoutTail(
            id=self.id,
            attempt=attempt if isinstance(attempt, int) else None,
            text=str(data.get("stdout_tail") or ""),
            fresh=False,
            running=False,
        )

    def peek(self, *, wait: float = 15.0, poll: float = 0.5) -> StdoutTail:
        """The current tail of a running job's standard output (gLite's perusal, DIRAC's peek).

        The request reaches the job's pilot with its next heartbeat and the answer comes back
        with the pilot's report, so this polls for up to ``wait`` seconds for a tail that
        differs from the one known before; an output that did not change since the last peek
        is returned after ``wait`` seconds with ``fresh`` false. A job no pilot runs (not yet,
        or any more) gives its last known tail at once, with ``running`` false.
        """
        before = self.stdout_tail()
        try:
            self.client.post_json(f"/api/v1/jobs/{self.id}/peek")
        except ConflictError:
            return before
        deadline = time.monotonic() + wait
        interval = backoff_intervals(poll, first=min(0.1, poll))
        latest = before
        while time.monotonic() < deadline:
            time.sleep(min(interval(), max(deadline - time.monotonic(), 0.0)))
            latest = self.stdout_tail()
            if latest.text != before.text:
                return StdoutTail(self.id, latest.attempt, latest.text, True, True)
        return StdoutTail(self.id, latest.attempt, latest.text, False, True)

    def jdl(self, form: str = "expanded") -> str:
        """The JDL as ``submitted`` or as ``expanded`` (defaults applied) by the server."""
        return self.client.get_text(f"/api/v1/jobs/{self.id}/jdl", params={"form": form})

    def output_files(self) -> list[OutputFile]:
        """The files of the output sandbox (``node/name`` for the nodes of a compound job)."""
        data = self.client.get_json(f"/api/v1/jobs/{self.id}/output")
        return [OutputFile.from_json(f) for f in data.get("files") or []]

    def output(
        self, directory: str | os.PathLike[str], *, clear: bool = False, per_file: bool = False
    ) -> list[Path]:
        """Download the output sandbox into ``directory``; return the files written.

        By default one tar.gz is fetched and extracted with the archive safety rules (no
        absolute names, no ``..``, no links, sizes bounded by the listing, all or nothing, no
        overwriting a file already there). ``per_file`` fetches the files one by one instead.
        ``clear`` tells the server the output was retrieved (DONE becomes CLEARED).
        """
        dest = Path(directory)
        listing = self.output_files()
        if per_file:
            return self._output_per_file(dest, listing, clear)
        params = {"clear": "true"} if clear else None
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as spool:
            self.client.download(f"/api/v1/jobs/{self.id}/output.tar.gz", spool, params=params)
            spool.seek(0)
            try:
                names = extract_tar_gz(
                    spool,
                    dest,
                    max_members=2 * len(listing) + _DIR_SLACK,
                    max_total_size=sum(f.size for f in listing) + 1,
                )
            except PilotWMSError as exc:
                raise ClientError(f"output of job {self.id}: {exc.message}") from exc
        return [dest / n for n in names if (dest / n).is_file()]

    def _output_per_file(self, dest: Path, listing: list[OutputFile], clear: bool) -> list[Path]:
        from pilotwms.core.archives import safe_member_name

        written: list[Path] = []
        for index, item in enumerate(listing):
            try:
                name = safe_member_name(item.name)
            except PilotWMSError as exc:
                raise ClientError(f"output of job {self.id}: {exc.message}") from exc
            target = dest / name
            if target.exists():
                raise ClientError(f"output of job {self.id}: {target} exists already")
            target.parent.mkdir(parents=True, exist_ok=True)
            last = clear and index == len(listing) - 1
            with target.open("xb") as out:
                self.client.download(
                    f"/api/v1/jobs/{self.id}/output/{quote(name)}",
                    out,
                    params={"clear": "true"} if last else None,
                )
            written.append(target)
        return written


class Compound(Job):
    """A parametric job, a collection or a DAG: a parent job and its nodes."""

    def __init__(
        self,
        client: Client,
        job_id: int,
        kind: str,
        nodes: list[tuple[int, str | None]] | None = None,
    ) -> None:
        super().__init__(client, job_id)
        self.kind = kind
        self._nodes = nodes

    def nodes(self) -> list[Job]:
        """The nodes, in id order (asked from the server unless known from the submission)."""
        if self._nodes is None:
            self._nodes = [(n.id, n.name) for n in self.status().nodes]
        return [Job(self.client, i, name) for i, name in self._nodes]
