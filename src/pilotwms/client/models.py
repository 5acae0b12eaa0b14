"""Typed views of the server's JSON answers.

Each model keeps the answer it was built from in ``raw``, so that a field the server adds later
is still reachable (and ``--json`` prints exactly what the server said). States are plain
strings compared with :class:`pilotwms.core.states.JobState` members (a ``StrEnum``), so that a
newer server with a state this client does not know still works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pilotwms.core.states import FINISHED, JobState

__all__ = [
    "CancelResult",
    "ChildCounts",
    "Clause",
    "JobEvent",
    "JobStatus",
    "MatchResult",
    "MatchingResource",
    "NodeStatus",
    "NonMatchingResource",
    "OutputFile",
    "Pilot",
    "StdoutTail",
    "SubmitResult",
    "UploadProgress",
    "parse_time",
]

_SUCCESS_STATES = frozenset({JobState.DONE, JobState.CLEARED, JobState.PURGED})


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp of the server, or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def is_finished(state: str) -> bool:
    """True once the job will never run again (DONE or a terminal state)."""
    return state in FINISHED


def is_success(state: str, done_code: str | None, exit_code: int | None) -> bool:
    """DONE (or later cleared/purged) with done code ok and exit code 0."""
    return state in _SUCCESS_STATES and done_code in ("ok", None) and (exit_code or 0) == 0


def glite_wording(state: str, done_code: str | None, exit_code: int | None) -> str:
    """How glite-wms-job-status prints a state: ``Done (Success)``, ``Done (Exit Code !=0)``,
    ``Done (Failed)``, ``Done (Cancelled)``, else the state's name."""
    if state != JobState.DONE:
        return state.capitalize()
    if done_code == "cancelled":
        return "Done (Cancelled)"
    if done_code == "failed":
        return "Done (Exit Code !=0)" if exit_code else "Done (Failed)"
    return "Done (Success)" if not exit_code else "Done (Exit Code !=0)"


@dataclass(frozen=True)
class ChildCounts:
    """How many nodes of a compound job are in each state."""

    total: int
    states: Mapping[str, int]

    def count(self, state: str) -> int:
        return int(self.states.get(state, 0))

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.states.items() if is_finished(s))


@dataclass(frozen=True)
class NodeStatus:
    """One node of a compound job as listed in its parent's status."""

    id: int
    name: str | None
    state: str
    done_code: str | None
    exit_code: int | None

    @property
    def succeeded(self) -> bool:
        return is_success(self.state, self.done_code, self.exit_code)

    def describe(self) -> str:
        return glite_wording(self.state, self.done_code, self.exit_code)


@dataclass(frozen=True)
class JobStatus:
    """A job's state as the bookkeeping knows it (``GET /api/v1/jobs/{id}``)."""

    id: int
    kind: str
    state: str
    done_code: str | None
    exit_code: int | None
    reason: str | None
    parent_id: int | None
    node_name: str | None
    owner: str | None
    submitted_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int | None
    cancel_requested: bool
    children: ChildCounts | None
    nodes: list[NodeStatus]
    edges: list[tuple[int, int]]
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobStatus:
        children = data.get("children")
        counts = (
            ChildCounts(
                total=int(children.get("total") or 0),
                states={str(k): int(v) for k, v in (children.get("states") or {}).items()},
            )
            if isinstance(children, Mapping)
            else None
        )
        return cls(
            id=int(data["id"]),
            kind=str(data.get("kind") or "job"),
            state=str(data.get("state")),
            done_code=_str(data.get("done_code")),
            exit_code=_int(data.get("exit_code")),
            reason=_str(data.get("reason")),
            parent_id=_int(data.get("parent_id")),
            node_name=_str(data.get("node_name")),
            owner=_str(data.get("owner")),
            submitted_at=parse_time(data.get("submitted_at")),
            updated_at=parse_time(data.get("updated_at")),
            started_at=parse_time(data.get("started_at")),
            finished_at=parse_time(data.get("finished_at")),
            attempt=_int(data.get("attempt")),
            cancel_requested=bool(data.get("cancel_requested")),
            children=counts,
            nodes=[
                NodeStatus(
                    id=int(n["id"]),
                    name=_str(n.get("name")),
                    state=str(n.get("state")),
                    done_code=_str(n.get("done_code")),
                    exit_code=_int(n.get("exit_code")),
                )
                for n in data.get("nodes") or []
            ],
            edges=[(int(a), int(b)) for a, b in data.get("edges") or []],
            raw=dict(data),
        )

    @property
    def compound(self) -> bool:
        return self.kind != "job"

    @property
    def finished(self) -> bool:
        """The job will not run again: DONE, ABORTED, CANCELLED, CLEARED or PURGED."""
        return is_finished(self.state)

    @property
    def succeeded(self) -> bool:
        """Finished with done code ok and exit code 0 (for a compound job: every node)."""
        if not is_success(self.state, self.done_code, self.exit_code):
            return False
        if self.nodes:
            return all(n.succeeded for n in self.nodes)
        return True

    def describe(self) -> str:
        """gLite's wording: ``Done (Success)``, ``Done (Exit Code !=0)``, ``Aborted``..."""
        return glite_wording(self.state, self.done_code, self.exit_code)


@dataclass(frozen=True)
class JobEvent:
    """One row of a job's event history (``logging-info``)."""

    time: datetime | None
    event: str
    state_from: str | None
    state_to: str | None
    source: str | None
    reason: str | None
    attempt: int | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobEvent:
        return cls(
            time=parse_time(data.get("time")),
            event=str(data.get("event")),
            state_from=_str(data.get("state_from")),
            state_to=_str(data.get("state_to")),
            source=_str(data.get("source")),
            reason=_str(data.get("reason")),
            attempt=_int(data.get("attempt")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class OutputFile:
    """One file of an output sandbox (``node/name`` for a compound job's nodes)."""

    name: str
    job_id: int
    size: int
    digest: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputFile:
        return cls(
            name=str(data["name"]),
            job_id=int(data["job_id"]),
            size=int(data.get("size") or 0),
            digest=str(data.get("digest") or ""),
        )


@dataclass(frozen=True)
class CancelResult:
    """Ids cancelled at once, and ids whose pilot was asked to kill them."""

    id: int
    cancelled: list[int]
    cancel_requested: list[int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CancelResult:
        return cls(
            id=int(data["id"]),
            cancelled=[int(i) for i in data.get("cancelled") or []],
            cancel_requested=[int(i) for i in data.get("cancel_requested") or []],
        )


@dataclass(frozen=True)
class SubmitResult:
    """What the server answered to a submission: the id, the kind and the node ids."""

    id: int
    kind: str
    nodes: list[tuple[int, str | None]]
    warnings: list[Mapping[str, Any]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SubmitResult:
        return cls(
            id=int(data["id"]),
            kind=str(data.get("kind") or "job"),
            nodes=[(int(n["id"]), _str(n.get("name"))) for n in data.get("nodes") or []],
            warnings=[w for w in data.get("warnings") or [] if isinstance(w, Mapping)],
        )


@dataclass(frozen=True)
class StdoutTail:
    """The end of a job's standard output as its pilot last sent it (perusal).

    ``fresh`` is true when the pilot answered this very request; ``running`` is false when no
    pilot runs the job any more (the text is then the last tail sent, possibly empty).
    """

    id: int
    attempt: int | None
    text: str
    fresh: bool
    running: bool


@dataclass(frozen=True)
class Pilot:
    """A pilot as ``GET /api/v1/pilots`` lists it.

    ``state``: submitted, queued, running, idle, draining, finished or failed; ``reason`` says
    why it ended (or why it drains); ``logs`` names the streams of its own log stored.
    """

    id: str
    state: str
    queue: str | None
    site: str | None
    batch_job_id: str | None
    version: str | None
    registered_at: datetime | None
    last_heartbeat_at: datetime | None
    jobs_run: int
    running_jobs: int
    raw: Mapping[str, Any] = field(repr=False)
    backend: str | None = None
    reason: str | None = None
    submitted_at: datetime | None = None
    ended_at: datetime | None = None
    logs: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pilot:
        return cls(
            id=str(data["id"]),
            state=str(data.get("state")),
            queue=_str(data.get("queue")),
            site=_str(data.get("site")),
            batch_job_id=_str(data.get("batch_id") or data.get("batch_job_id")),
            version=_str(data.get("version")),
            registered_at=parse_time(data.get("registered_at")),
            last_heartbeat_at=parse_time(data.get("last_heartbeat_at")),
            jobs_run=_int(data.get("jobs_run")) or 0,
            running_jobs=_int(data.get("running_jobs")) or 0,
            raw=dict(data),
            backend=_str(data.get("backend")),
            reason=_str(data.get("reason")),
            submitted_at=parse_time(data.get("submitted_at")),
            ended_at=parse_time(data.get("ended_at")),
            logs=tuple(str(x) for x in data.get("logs") or () if isinstance(x, str)),
        )


@dataclass(frozen=True)
class Clause:
    """One check of list-match: the clause text, its value, whose side, whether it held."""

    clause: str
    value: Any
    side: str | None
    ok: bool


@dataclass(frozen=True)
class MatchingResource:
    kind: str
    id: str
    rank: float


@dataclass(frozen=True)
class NonMatchingResource:
    kind: str
    id: str
    failed: list[Clause]
    clauses: list[Clause]


@dataclass(frozen=True)
class MatchResult:
    """List-match: where the job could run (best rank first) and why not elsewhere."""

    requirements: str
    rank: str
    matching: list[MatchingResource]
    not_matching: list[NonMatchingResource]
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatchResult:
        def clause(c: Mapping[str, Any], ok: bool | None = None) -> Clause:
            return Clause(
                clause=str(c.get("clause")),
                value=c.get("value"),
                side=_str(c.get("side")),
                ok=bool(c.get("ok")) if ok is None else ok,
            )

        return cls(
            requirements=str(data.get("requirements") or "true"),
            rank=str(data.get("rank") or "0"),
            matching=[
                MatchingResource(str(m["kind"]), str(m["id"]), float(m.get("rank") or 0.0))
                for m in data.get("matching") or []
            ],
            not_matching=[
                NonMatchingResource(
                    str(m["kind"]),
                    str(m["id"]),
                    [clause(c, False) for c in m.get("failed") or []],
                    [clause(c) for c in m.get("clauses") or []],
                )
                for m in data.get("not_matching") or []
            ],
            raw=dict(data),
        )


@dataclass(frozen=True)
class UploadProgress:
    """Passed to a submission's progress callback after every chunk and every skipped file.

    ``skipped`` is true for a file the server already had (same digest): it is not sent.
    """

    entry: str
    sent: int
    size: int
    total_sent: int
    total_size: int
    skipped: bool = False
