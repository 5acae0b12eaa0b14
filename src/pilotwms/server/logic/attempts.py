"""Attempts: what the reports of a pilot do to its jobs, and how an attempt ends.

Every hand-out starts an attempt (``jobs.attempt`` is the current one's number). A report names
its attempt; it is applied only while that attempt is current and the job is held by a pilot
(READY, SCHEDULED, RUNNING). Otherwise it is **stale**: the job was requeued, or already ended
through another attempt, and the report changes nothing (the zombie-pilot rule). Reports are
idempotent by ``report_id``: an id already applied is answered ``duplicate``.

Report types:

* ``started``: READY -> RUNNING (``Running``: the job wrapper started).
* ``payload_started``: the attempt's payload token is taken (``ReallyRunning`` event): from now on
  losing the attempt is a deep resubmission.
* ``peek``: the stdout tail is stored on the attempt.
* ``finished``: :func:`end_attempt` with the reported status.

:func:`end_attempt` is shared with lease expiry and deregistration: ``retries.decide`` gives
the verdict (DONE ok/failed, CANCELLED, ABORTED with gLite's reason, or back to WAITING as a
deep, shallow or uncounted retry); a requeue of a job whose cancel was requested cancels it
instead. DAG children are released or aborted after a node's final end (``dag_release``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, select, update

from pilotwms.core.errors import IllegalTransition
from pilotwms.core.states import ACTIVE, DoneCode, JobState
from pilotwms.server.db import attempts, dag_edges, jobs, pilot_reports, pilots, utcnow
from pilotwms.server.db.bulk import insert_rows, update_rows
from pilotwms.server.logic.dag_release import (
    abort_descendants,
    queues_of,
    release_after,
    release_held,
)
from pilotwms.server.logic.lifecycle import (
    Move,
    Note,
    apply_transitions,
    record_event,
    refresh_parent,
)
from pilotwms.server.logic.retries import AttemptEnd, EndStatus, RetryBudget, Verdict, decide

S = JobState
REPORT_TYPES = ("started", "payload_started", "finished", "peek")
PAYLOAD_EVENT = "ReallyRunning"
_TAIL_LIMIT = 64 * 1024


@dataclass
class Effects:
    """What the dispatcher must learn once the transaction committed: the task queues whose
    waiting jobs changed, and how many running jobs of each group ended."""

    tq_ids: set[int] = field(default_factory=set)
    released: Counter[str] = field(default_factory=Counter)
    #: Compound jobs whose nodes moved: their derived state is refreshed once per batch.
    parents: set[int] = field(default_factory=set)


def move(
    conn: Connection,
    job: Any,
    to: JobState,
    *,
    effects: Effects,
    source: str,
    reason: str | None,
    attempt: int,
    now: datetime,
    **kwargs: Any,
) -> None:
    """One lifecycle transition of ``job`` (whose row the caller holds), leaving the refresh
    of its compound parent to :func:`refresh_parents` at the end of the batch: a report batch
    of a 2,000-node job then re-derives the parent once, not once per node and report."""
    moved = apply_transitions(
        conn,
        [job.id],
        to,
        source=source,
        reason=reason,
        attempt=attempt,
        now=now,
        refresh_parents=False,
        **kwargs,
    )
    if not moved:
        raise IllegalTransition(job.id, job.state, to, "the job changed concurrently")
    if job.parent_id is not None:
        effects.parents.add(int(job.parent_id))


def refresh_parents(conn: Connection, effects: Effects, *, source: str = "server") -> None:
    """Re-derive the state of every compound job whose nodes moved (see :func:`move`), after
    releasing the nodes their ``max_nodes_running`` held back (``dag_release.release_held``)."""
    effects.tq_ids.update(release_held(conn, effects.parents))
    for parent_id in sorted(effects.parents):
        refresh_parent(conn, parent_id, source=source)
    effects.parents.clear()


@dataclass(frozen=True)
class RetryCaps:
    """The server's caps on RetryCount and ShallowRetryCount (gLite's MaxRetryCount...)."""

    max_retry_count: int = 10
    max_shallow_retry_count: int = 10


def job_for_update(conn: Connection, job_id: int) -> Any:
    """The job row, locked on PostgreSQL so that a report and the lease task cannot both end
    the same attempt (SQLite's write transaction excludes that already)."""
    stmt = select(jobs).where(jobs.c.id == job_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


def is_current(job: Any, number: int) -> bool:
    """Whether attempt ``number`` is the one holding ``job`` now."""
    return job is not None and job.attempt == number and S(job.state) in ACTIVE


@dataclass(frozen=True)
class _Ending:
    """What ending one attempt does to its job: the target state, the row values the
    transition writes, the verdict and the job's retry counters afterwards."""

    to: JobState
    verdict: Verdict
    reason: str
    done_code: DoneCode | None
    exit_code: int | None
    retries_used: int
    shallow_retries_used: int


def _ending(job: Any, end: AttemptEnd, caps: RetryCaps) -> _Ending:
    budget = RetryBudget(
        retry_count=job.retry_count,
        shallow_retry_count=job.shallow_retry_count,
        retries_used=job.retries_used,
        shallow_retries_used=job.shallow_retries_used,
        max_retry_count=caps.max_retry_count,
        max_shallow_retry_count=caps.max_shallow_retry_count,
    )
    decision = decide(end, budget)
    verdict, reason = decision.verdict, decision.reason
    if verdict.requeues and job.cancel_requested:
        verdict, reason = Verdict.CANCELLED, "cancelled by the user"
    done_code: DoneCode | None = None
    exit_code: int | None = None
    if verdict is Verdict.DONE_OK:
        to, done_code, exit_code = S.DONE, DoneCode.OK, decision.exit_code or 0
    elif verdict is Verdict.DONE_FAILED:
        to, done_code, exit_code = S.DONE, DoneCode.FAILED, decision.exit_code
    elif verdict is Verdict.CANCELLED:
        to = S.CANCELLED
    elif verdict is Verdict.ABORTED:
        to = S.ABORTED
    else:
        to = S.WAITING
    return _Ending(
        to=to,
        verdict=verdict,
        reason=reason,
        done_code=done_code,
        exit_code=exit_code,
        retries_used=decision.retries_used,
        shallow_retries_used=decision.shallow_retries_used,
    )


def _attempt_values(
    attempt: Any, end: AttemptEnd, reason: str, usage: Mapping[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """The attempt row's values once it ended (usage figures from the report, if any)."""
    why = end.reason or reason
    values: dict[str, Any] = {
        "state": end.status.value,
        "finished_at": now,
        "exit_code": end.exit_code,
        "reason": why[:4000] if why else None,
        "signal": end.signal,
        "payload_started": bool(end.payload_started or attempt.payload_started),
        "cpu_s": None,
        "max_rss_mb": None,
        "wall_s": None,
        "stdout_tail": None,
    }
    for name in ("cpu_s", "max_rss_mb", "wall_s"):
        value = (usage or {}).get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = float(value)
    tail = (usage or {}).get("stdout_tail")
    if isinstance(tail, str) and tail:
        values["stdout_tail"] = tail[-_TAIL_LIMIT:]
    return values


def _attempt_update(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the usage figures the report did not carry, so that an earlier
    peek's stdout tail (or a heartbeat's figures) stay on the row."""
    return {k: v for k, v in values.items() if v is not None or k not in _USAGE}


_USAGE = ("cpu_s", "max_rss_mb", "wall_s", "stdout_tail")


def end_attempt(
    conn: Connection,
    job: Any,
    attempt: Any,
    end: AttemptEnd,
    *,
    source: str,
    caps: RetryCaps,
    effects: Effects,
    usage: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Verdict:
    """End the current attempt of ``job`` as ``end`` says; returns the verdict applied."""
    now = now or utcnow()
    ending = _ending(job, end, caps)
    kwargs: dict[str, Any] = {}
    if ending.done_code is not None:
        kwargs = {"done_code": ending.done_code, "exit_code": ending.exit_code}
    move(
        conn,
        job,
        ending.to,
        effects=effects,
        source=source,
        reason=ending.reason,
        attempt=attempt.number,
        now=now,
        **kwargs,
    )
    if (ending.retries_used, ending.shallow_retries_used) != (
        job.retries_used,
        job.shallow_retries_used,
    ):
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job.id)
            .values(
                retries_used=ending.retries_used,
                shallow_retries_used=ending.shallow_retries_used,
            )
        )
    values = _attempt_update(_attempt_values(attempt, end, ending.reason, usage, now))
    conn.execute(update(attempts).where(attempts.c.id == attempt.id).values(**values))
    if attempt.pilot_id is not None:
        conn.execute(
            update(pilots)
            .where(pilots.c.id == attempt.pilot_id)
            .values(jobs_run=pilots.c.jobs_run + 1)
        )
    effects.released[job.owner_group] += 1
    if ending.to == S.WAITING and job.task_queue_id is not None:
        effects.tq_ids.add(int(job.task_queue_id))
    if job.parent_id is not None:
        if ending.verdict is Verdict.DONE_OK and (ending.exit_code or 0) == 0:
            _release(conn, [job.id], effects, now)
        elif ending.to != S.WAITING:
            abort_descendants(conn, job.id, now=now)
    return ending.verdict


def _release(conn: Connection, job_ids: Sequence[int], effects: Effects, now: datetime) -> None:
    """Release the DAG children of these nodes that just succeeded (``dag_release``), set-based
    for the batch; the compound jobs are refreshed by :func:`refresh_parents` afterwards."""
    released = release_after(conn, job_ids, now=now, refresh_parents=False)
    effects.tq_ids.update(queues_of(conn, released))


def _with_children(conn: Connection, job_ids: Sequence[int]) -> set[int]:
    """Those of ``job_ids`` that are the parent node of some DAG edge."""
    if not job_ids:
        return set()
    return {int(r[0]) for r in conn.execute(_WITH_CHILDREN, {"ids": list(job_ids)})}


def end_attempts(
    conn: Connection,
    ends: Sequence[tuple[Any, Any, AttemptEnd, Mapping[str, Any] | None]],
    *,
    source: str,
    caps: RetryCaps,
    effects: Effects,
    now: datetime | None = None,
    progress: Mapping[tuple[int, int], Progress] | None = None,
) -> None:
    """:func:`end_attempt` for many ``(job, attempt, end, usage)`` of distinct jobs at once.

    Attempts that end their job for good without touching its retry counters (the usual
    ``done`` and ``failed``) are applied set-based: one transition per (state, verdict,
    attempt number, progress), the attempt rows in one executemany, the pilots' job counts
    in one statement each, DAG children looked up once for the whole set. Every other end (a
    requeue, a cancel, an abort, a counted retry) goes through :func:`end_attempt` one by one,
    as lease expiry does.

    ``progress``: what the same report batch said of these attempts before their end, keyed
    ``(job id, attempt)``, not applied yet. A set-based end takes it on the way, in its one
    update (READY -> RUNNING -> DONE: ``Running``, ``ReallyRunning``, ``Done``); for the
    others it is applied first, as for attempts that do not end.
    """
    now = now or utcnow()
    progress = progress or {}
    groups: dict[tuple[Any, ...], list[tuple[Any, Any, AttemptEnd, Any, _Ending]]] = {}
    singles: list[tuple[Any, Any, AttemptEnd, Mapping[str, Any] | None]] = []
    for job, attempt, end, usage in ends:
        ending = _ending(job, end, caps)
        simple = ending.to == S.DONE and (
            ending.retries_used,
            ending.shallow_retries_used,
        ) == (job.retries_used, job.shallow_retries_used)
        if not simple:
            singles.append((job, attempt, end, usage))
            continue
        steps = progress.get((job.id, attempt.number), _NO_PROGRESS).steps()
        key = (job.state, ending.reason, ending.done_code, ending.exit_code, attempt.number, steps)
        groups.setdefault(key, []).append((job, attempt, end, usage, ending))
    if singles:
        _apply_progress(
            conn,
            {
                (job.id, attempt.number): (job, attempt, progress[(job.id, attempt.number)])
                for job, attempt, _, _ in singles
                if (job.id, attempt.number) in progress
            },
            ending=True,
            source=source,
            effects=effects,
            now=now,
        )
    for job, attempt, end, usage in singles:
        end_attempt(
            conn,
            job,
            attempt,
            end,
            source=source,
            caps=caps,
            effects=effects,
            usage=usage,
            now=now,
        )
    rows: list[tuple[Any, ...]] = []
    jobs_run: Counter[int] = Counter()
    succeeded: list[int] = []
    failed: list[int] = []
    for (state, reason, done_code, exit_code, number, steps), members in groups.items():
        ids = [job.id for job, *_ in members]
        moved = apply_transitions(
            conn,
            ids,
            S.DONE,
            source=source,
            reason=reason,
            attempt=number,
            done_code=done_code,
            exit_code=exit_code,
            now=now,
            refresh_parents=False,
            via=steps,
            from_state=S(state),
        )
        if len(moved) != len(ids):
            job = next(j for j, *_ in members if j.id not in set(moved))
            raise IllegalTransition(job.id, job.state, S.DONE, "the job changed concurrently")
        for job, attempt, end, usage, ending in members:
            values = _attempt_values(attempt, end, ending.reason, usage, now)
            rows.append((*(values[name] for name in _ENDED_COLUMNS), attempt.id))
            if attempt.pilot_id is not None:
                jobs_run[int(attempt.pilot_id)] += 1
            effects.released[job.owner_group] += 1
            if job.parent_id is not None:
                effects.parents.add(int(job.parent_id))
                if ending.verdict is Verdict.DONE_OK and (ending.exit_code or 0) == 0:
                    succeeded.append(job.id)
                else:
                    failed.append(job.id)
    _update_attempts(conn, rows)
    for pilot_id, n in jobs_run.items():
        conn.execute(_JOBS_RUN, {"pilot": pilot_id, "n": n})
    parents_of_edges = _with_children(conn, succeeded + failed)
    _release(conn, [j for j in succeeded if j in parents_of_edges], effects, now)
    for job_id in failed:
        if job_id in parents_of_edges:
            abort_descendants(conn, job_id, now=now)


def _update_attempts(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Write ended attempts (values of ``_ENDED_COLUMNS``, then the id) in one executemany,
    below SQLAlchemy's per-row processing (``bulk.update_rows``); a usage figure a report did
    not carry keeps the row's value (``coalesce``), as :func:`end_attempt` leaves it out."""
    update_rows(conn, attempts, "id", _ENDED_COLUMNS, rows, keep_if_null=_USAGE)


#: What ending an attempt writes on its row (the keys of :func:`_attempt_values`).
_ENDED_COLUMNS = (
    "state",
    "finished_at",
    "exit_code",
    "reason",
    "signal",
    "payload_started",
    *_USAGE,
)


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _end_of(report: Mapping[str, Any], payload_started: bool) -> AttemptEnd:
    try:
        status = EndStatus(str(report.get("status")))
    except ValueError:
        status = EndStatus.FAILED
    if status is EndStatus.LEASE_EXPIRED:  # the server's own status, never a pilot's
        status = EndStatus.FAILED
    exit_code = _number(report.get("exit_code"))
    signal = _number(report.get("signal"))
    return AttemptEnd(
        status=status,
        payload_started=bool(report.get("payload_started")) or payload_started,
        exit_code=exit_code,
        signal=signal,
        reason=str(report.get("reason") or ""),
    )


def apply_reports(
    conn: Connection,
    pilot_id: int,
    reports: Sequence[Mapping[str, Any]],
    *,
    caps: RetryCaps,
    effects: Effects,
    now: datetime | None = None,
) -> list[dict[str, str]]:
    """Apply a batch of reports from ``pilot_id`` (oldest first); one result per report with a
    readable ``report_id``: ``accepted``, ``duplicate`` or ``stale`` (a malformed report is
    answered ``stale`` too: it changed nothing and never will).

    The batch is applied in phases, so that a pilot's batch of many jobs costs a few
    statements per phase rather than several per report: every ``started`` and
    ``payload_started`` together, then peeks, then each ``finished`` (whose verdicts differ).
    The order within one attempt (started, payload started, finished) is what the phases keep.
    """
    now = now or utcnow()
    source = f"pilot:{pilot_id}"
    ids = [str(r.get("report_id")) for r in reports if isinstance(r.get("report_id"), str)]
    seen = {r[0] for r in conn.execute(_SEEN_REPORTS, {"ids": ids})} if ids else set()
    batch: list[tuple[str, int | None, int | None, str, Mapping[str, Any]]] = []
    results: list[dict[str, str]] = []
    for report in reports:
        report_id = report.get("report_id")
        if not isinstance(report_id, str) or not report_id or len(report_id) > 64:
            continue
        if report_id in seen:
            results.append({"report_id": report_id, "outcome": "duplicate"})
            continue
        seen.add(report_id)
        kind = str(report.get("type"))
        batch.append(
            (report_id, _number(report.get("job_id")), _number(report.get("attempt")), kind, report)
        )
    job_ids = sorted({job_id for _, job_id, _, _, _ in batch if job_id is not None})
    held = _current_attempts(conn, job_ids)
    accepted: list[tuple[str, int, int, str, Mapping[str, Any]]] = []
    records: list[list[Any]] = []
    for report_id, job_id, number, kind, report in batch:
        ok = (
            job_id is not None
            and number is not None
            and kind in REPORT_TYPES
            and (job_id, number) in held
        )
        outcome = "accepted" if ok else "stale"
        if ok:
            assert job_id is not None and number is not None
            accepted.append((report_id, job_id, number, kind, report))
        results.append({"report_id": report_id, "outcome": outcome})
        records.append([report_id, pilot_id, job_id, number, kind[:16], outcome, now])
    progress = _progress(held, accepted)
    finishing = {(j, n) for _, j, n, k, _ in accepted if k == "finished"}
    _apply_progress(
        conn,
        {key: (*held[key], p) for key, p in progress.items() if key not in finishing},
        ending=False,
        source=source,
        effects=effects,
        now=now,
    )
    for _, job_id, number, kind, report in accepted:
        tail = report.get("stdout_tail")
        if kind == "peek" and isinstance(tail, str):
            conn.execute(
                update(attempts)
                .where(attempts.c.id == held[(job_id, number)][1].id)
                .values(stdout_tail=tail[-_TAIL_LIMIT:])
            )
    payload = {(j, n) for _, j, n, k, _ in accepted if k == "payload_started"}
    ended: set[tuple[int, int]] = set()
    ends: list[tuple[Any, Any, AttemptEnd, Mapping[str, Any] | None]] = []
    for report_id, job_id, number, kind, report in accepted:
        if kind != "finished":
            continue
        if (job_id, number) in ended:  # one end per attempt: a second one changes nothing
            _mark_stale(results, records, report_id)
            continue
        ended.add((job_id, number))
        job, attempt = held[(job_id, number)]
        started = attempt.payload_started or (job_id, number) in payload
        ends.append((job, attempt, _end_of(report, started), report))
    end_attempts(conn, ends, source=source, caps=caps, effects=effects, now=now, progress=progress)
    insert_rows(conn, pilot_reports, _REPORT_COLUMNS, records)
    refresh_parents(conn, effects, source=source)
    return results


def _mark_stale(results: list[dict[str, str]], records: list[list[Any]], report_id: str) -> None:
    for result in results:
        if result["report_id"] == report_id:
            result["outcome"] = "stale"
    for record in records:
        if record[0] == report_id:
            record[_OUTCOME] = "stale"


#: A report's row in ``pilot_reports`` (a list, so that :func:`_mark_stale` can amend it).
_REPORT_COLUMNS = ("report_id", "pilot_id", "job_id", "attempt", "type", "outcome", "received_at")
_OUTCOME = _REPORT_COLUMNS.index("outcome")


# The hot statements of a report batch, built once (see lifecycle._STATES_OF).
_SEEN_REPORTS = select(pilot_reports.c.report_id).where(
    pilot_reports.c.report_id.in_(bindparam("ids", expanding=True))
)
_JOBS_RUN = (
    update(pilots)
    .where(pilots.c.id == bindparam("pilot"))
    .values(jobs_run=pilots.c.jobs_run + bindparam("n"))
)
_WITH_CHILDREN = (
    select(dag_edges.c.parent_job_id)
    .where(dag_edges.c.parent_job_id.in_(bindparam("ids", expanding=True)))
    .distinct()
)
#: What ending an attempt reads of its job (not the JDL, which can be large).
_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.state,
    jobs.c.attempt,
    jobs.c.parent_id,
    jobs.c.owner_group,
    jobs.c.task_queue_id,
    jobs.c.retry_count,
    jobs.c.shallow_retry_count,
    jobs.c.retries_used,
    jobs.c.shallow_retries_used,
    jobs.c.cancel_requested,
)
#: The attempts that hold their job now and have not ended, with their jobs: the job's
#: columns, then the attempt's (``_Attempt``). Jobs in id order, so that concurrent batches
#: lock rows in one order on PostgreSQL.
_HELD = (
    select(
        *_JOB_COLUMNS,
        attempts.c.id.label("attempt_id"),
        attempts.c.pilot_id,
        attempts.c.payload_started,
    )
    .join_from(
        jobs,
        attempts,
        and_(attempts.c.job_id == jobs.c.id, attempts.c.number == jobs.c.attempt),
    )
    .where(
        jobs.c.id.in_(bindparam("ids", expanding=True)),
        jobs.c.state.in_(sorted(s.value for s in ACTIVE)),
        attempts.c.finished_at.is_(None),
    )
    .order_by(jobs.c.id)
)
_HELD_FOR_UPDATE = _HELD.with_for_update(of=jobs)


class _Attempt(NamedTuple):
    """What a report batch and ``end_attempt`` read of an open attempt."""

    id: int
    job_id: int
    number: int
    pilot_id: int | None
    payload_started: bool


_ATTEMPTS_RUNNING = (
    update(attempts)
    .where(attempts.c.id.in_(bindparam("ids", expanding=True)))
    .values(state="running")
)
_ATTEMPTS_PAYLOAD = (
    update(attempts)
    .where(attempts.c.id.in_(bindparam("ids", expanding=True)))
    .values(payload_started=True)
)


def _current_attempts(
    conn: Connection, job_ids: Sequence[int]
) -> dict[tuple[int, int], tuple[Any, Any]]:
    """``(job id, attempt) -> (job row, attempt)`` for the attempts that hold their job now
    (:func:`is_current`) and have not ended, in one query (job rows locked on PostgreSQL, see
    :func:`job_for_update`)."""
    if not job_ids:
        return {}
    stmt = _HELD_FOR_UPDATE if conn.dialect.name == "postgresql" else _HELD
    out: dict[tuple[int, int], tuple[Any, Any]] = {}
    for row in conn.execute(stmt, {"ids": list(job_ids)}):
        attempt = _Attempt(row.attempt_id, row.id, row.attempt, row.pilot_id, row.payload_started)
        out[(row.id, row.attempt)] = (row, attempt)
    return out


@dataclass(frozen=True)
class Progress:
    """What a batch's reports say an attempt did short of its end: it started (the job was
    READY: ``Running``), and it took the payload token (``ReallyRunning``)."""

    starts: bool = False
    payload: bool = False

    def steps(self) -> tuple[Move | Note, ...]:
        """These steps as the ``via`` of a transition (``lifecycle.apply_transitions``)."""
        return _STEPS[(self.starts, self.payload)]


_NO_PROGRESS = Progress()
_STARTED = Move(S.RUNNING, "the pilot started the job")
_PAYLOAD = Note(PAYLOAD_EVENT, "the payload started")
_STEPS: dict[tuple[bool, bool], tuple[Move | Note, ...]] = {
    (False, False): (),
    (True, False): (_STARTED,),
    (False, True): (_PAYLOAD,),
    (True, True): (_STARTED, _PAYLOAD),
}


def _progress(
    held: Mapping[tuple[int, int], tuple[Any, Any]],
    accepted: Sequence[tuple[str, int, int, str, Mapping[str, Any]]],
) -> dict[tuple[int, int], Progress]:
    """The :class:`Progress` of every attempt the accepted reports moved, by ``(job id,
    attempt)``, in report order.

    A ``finished`` report implies the progress reports before it (the start, and the payload
    start when it says ``payload_started``), except a ``refused`` one, which never started: an
    agent whose short job ended before its progress reports went out sends the end alone, and
    the history still shows every step.
    """
    out: dict[tuple[int, int], Progress] = {}
    for _, job_id, number, kind, report in accepted:
        job, attempt = held[(job_id, number)]
        ended = kind == "finished" and report.get("status") != EndStatus.REFUSED.value
        starts = (ended or kind in _PROGRESS_TYPES) and job.state == S.READY.value
        payload = not attempt.payload_started and (
            kind == "payload_started" or (ended and report.get("payload_started") is True)
        )
        if starts or payload:
            key = (job_id, number)
            before = out.get(key, _NO_PROGRESS)
            out[key] = Progress(before.starts or starts, before.payload or payload)
    return out


_PROGRESS_TYPES = ("started", "payload_started")


def _apply_progress(
    conn: Connection,
    items: Mapping[tuple[int, int], tuple[Any, Any, Progress]],
    *,
    ending: bool,
    source: str,
    effects: Effects,
    now: datetime,
) -> None:
    """READY -> RUNNING for every attempt of ``items`` that started, and the payload token
    for every one that took it, in a few statements for the whole batch. The attempt rows
    of ``ending`` attempts are left to their end, which writes them once."""
    starting: dict[int, list[tuple[Any, Any]]] = {}  # attempt number -> (job, attempt)
    payload: dict[int, list[tuple[Any, Any]]] = {}
    for (_, number), (job, attempt, progress) in items.items():
        if progress.starts:
            starting.setdefault(number, []).append((job, attempt))
        if progress.payload:
            payload.setdefault(number, []).append((job, attempt))
    for number, pairs in starting.items():
        apply_transitions(
            conn,
            [job.id for job, _ in pairs],
            S.RUNNING,
            source=source,
            reason=_STARTED.reason,
            attempt=number,
            now=now,
            refresh_parents=False,
            from_state=S.READY,  # what Progress.starts means
        )
        if not ending:
            conn.execute(_ATTEMPTS_RUNNING, {"ids": [attempt.id for _, attempt in pairs]})
        effects.parents.update(int(job.parent_id) for job, _ in pairs if job.parent_id is not None)
    for number, pairs in payload.items():
        if not ending:
            conn.execute(_ATTEMPTS_PAYLOAD, {"ids": [attempt.id for _, attempt in pairs]})
        record_event(
            conn,
            [job.id for job, _ in pairs],
            PAYLOAD_EVENT,
            source=source,
            reason=_PAYLOAD.reason,
            attempt=number,
            now=now,
        )


def check_current(conn: Connection, job_id: int, number: int) -> Any:
    """The job row if attempt ``number`` holds it now, else ``None`` (for output uploads)."""
    job = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    return job if is_current(job, number) else None


__all__ = [
    "REPORT_TYPES",
    "Effects",
    "Progress",
    "RetryCaps",
    "apply_reports",
    "check_current",
    "end_attempt",
    "end_attempts",
    "is_current",
]
