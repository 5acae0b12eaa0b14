"""Dispatch: handing waiting jobs to the pilots that ask for work, each job to one pilot only.

The :class:`Dispatcher` (one per server process) keeps the waiting task queues in a
:class:`~pilotwms.server.logic.matchmaking.TaskQueueIndex`, so a work request evaluates
Requirements once per task queue, never once per job. The index is advisory: the database is
the truth. A hand-out asks the index which queues to take from, then claims concrete jobs of
those queues in the database (oldest first) with a compare-and-set on the state:

* PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks rows no concurrent transaction (of
  this or another server process) holds, then ``UPDATE ... WHERE state = 'WAITING'``;
* SQLite: the write transaction holds the database's single write lock (``BEGIN IMMEDIATE``)
  and the same conditional ``UPDATE ... RETURNING`` says which rows were really taken.

Each job taken gets a new attempt (``jobs.attempt + 1``, a row in ``attempts``) and moves
WAITING -> READY through the lifecycle (``Match``). A queue that yields fewer jobs than the
index promised is recounted, so a stale index corrects itself; the index is also recounted
periodically and after cancels and expiry, which change the database behind its back.

Work requests are long polls: a request that finds nothing waits on the :class:`Notifier`,
which every increase of waiting jobs (submission, requeue, DAG release) wakes, so a job
submitted to an idle pilot starts within milliseconds and nobody polls the database.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from pilotwms.classad import ClassAd, ClassAdSyntaxError, parse_ad, unparse
from pilotwms.core.states import ACTIVE, JobKind, JobState
from pilotwms.server.db import Database, attempts, job_inputs, jobs, pilots, task_queues, utcnow
from pilotwms.server.db.bulk import insert_rows
from pilotwms.server.logic.job_specs import build_job_spec
from pilotwms.server.logic.lifecycle import apply_transitions, refresh_parent
from pilotwms.server.logic.matchmaking import FairShare, SlotOffer, TaskQueue, TaskQueueIndex
from pilotwms.server.logic.pilots import DRAINING, LIVE_STATES, PilotGone, load_pilot_ad

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ACTIVE = [s.value for s in ACTIVE]


class Notifier:
    """Wakes the long polls waiting for work; ``notify`` and ``close`` may be called from any
    thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        #: Set by :meth:`close` when the server stops: long polls answer at once, with no jobs.
        self.closed = False
        #: Long polls waiting now (kept by the work route).
        self.parked = 0

    def current(self) -> asyncio.Event:
        """The event the next :meth:`notify` sets; take it *before* looking for work, so a
        notification between the look and the wait is not lost. Call in the event loop."""
        return self._event

    def notify(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._fire()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def close(self) -> None:
        """Release every waiting long poll for good (server shutdown): the server would
        otherwise wait for them to time out, then cancel them."""
        self.closed = True
        self.notify()

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


@dataclass(frozen=True)
class WorkRequest:
    """What a pilot offers in one work request (``docs/pilot-protocol.md``)."""

    free_cores: int
    free_memory_mb: int | None = None
    time_left_s: float | None = None
    max_jobs: int = 1
    ad_update: Mapping[str, Any] = field(default_factory=dict)
    #: Jobs the pilot queues beyond its free slots, to start as slots free (short jobs).
    prefetch: int = 0


def representative_job_ad(jdl: str, requirements: str, rank: str) -> str:
    """The attributes of one job's JDL that its Requirements or Rank may read as ``MY``: the
    task queue's ``job_ad``. Only those, so that queues whose jobs differ in other attributes
    (Executable, Arguments) still share clause evaluations in the index."""
    names = {n.lower() for n in _NAME.findall(f"{requirements} {rank}")}
    names -= {"requirements", "rank", "other", "target", "my"}
    if not names:
        return ""
    try:
        ad = parse_ad(jdl)
    except ClassAdSyntaxError:
        return ""
    kept = ClassAd()
    for name in ad:
        if name.lower() in names:
            kept[name] = ad[name]
    return unparse(kept) if len(kept) else ""


class Dispatcher:
    """The task-queue index, the hand-out and the notifier of one server process.

    Every use of the index happens under ``lock`` (hand-outs run in worker threads); holding
    it across the claiming transaction also keeps the index and the database in step within
    the process.
    """

    def __init__(
        self,
        db: Database,
        *,
        fair_share: FairShare | None = None,
        max_jobs_per_request: int = 128,
        notifier: Notifier | None = None,
    ) -> None:
        self.db = db
        self.index = TaskQueueIndex(fair_share)
        self.lock = threading.Lock()
        self.notifier = notifier
        self.max_jobs_per_request = max_jobs_per_request
        self._pilot_ads: dict[int, ClassAd] = {}
        self._queues: set[int] = set()  # the task queues in the index
        # Running jobs that ended, per group, not yet applied to the index: a report batch
        # leaves them here instead of waiting for ``lock`` (a hand-out may hold it through a
        # whole claiming transaction); the next user of the index applies them first.
        self._released: Counter[str] = Counter()
        self._released_lock = threading.Lock()
        # Pilots last found draining. Until its heartbeat brings the drain, such a pilot keeps
        # a long poll waiting, and every new job wakes it: a read then says "nothing for
        # you", where the claiming write transaction would be opened for nothing.
        self._draining: set[int] = set()

    # --- keeping the index current --------------------------------------------------------

    def resync(self, tq_ids: Iterable[int] | None = None) -> None:
        """Recount waiting jobs (of ``tq_ids``, or of every queue) and running jobs per group
        from the database."""
        with self.lock:
            if tq_ids is None:
                # The recount sees every job whose end was noted so far (noted after commit).
                with self._released_lock:
                    self._released.clear()
            else:
                self._apply_released()
            with self.db.read() as conn:
                grew = self._resync(conn, None if tq_ids is None else set(tq_ids))
        if grew:
            self.notify()

    def _resync(self, conn: Connection, tq_ids: set[int] | None) -> bool:
        stmt = (
            select(jobs.c.task_queue_id, func.count(), func.min(jobs.c.submitted_at))
            .where(jobs.c.state == JobState.WAITING.value, jobs.c.task_queue_id.is_not(None))
            .group_by(jobs.c.task_queue_id)
        )
        if tq_ids is not None:
            if not tq_ids:
                return False
            stmt = stmt.where(jobs.c.task_queue_id.in_(sorted(tq_ids)))
        counts = {int(r[0]): (int(r[1]), r[2]) for r in conn.execute(stmt)}
        grew = False
        missing = [tq for tq in counts if tq not in self.index]
        if missing:
            self._add_queues(conn, missing, counts)
            grew = True
        for tq, (n, _) in counts.items():
            if tq in self.index:
                before = self.index.waiting(tq)
                grew = grew or n > before
                self.index.set_waiting(tq, n)
        gone = (tq_ids if tq_ids is not None else set(self._queues)) - set(counts)
        for tq in gone:
            if tq_ids is None:
                self.index.remove(tq)
                self._queues.discard(tq)
            elif tq in self.index:
                # Kept, empty, until the next full recount: the next job of the same queue
                # (a user submitting one job after another) then does not pay for parsing
                # and compiling the queue's Requirements again on its way to a pilot.
                self.index.set_waiting(tq, 0)
        if tq_ids is None:
            running = conn.execute(
                select(jobs.c.owner_group, func.count())
                .where(jobs.c.state.in_(_ACTIVE), jobs.c.kind == JobKind.JOB.value)
                .group_by(jobs.c.owner_group)
            ).all()
            self.index.set_running({g: int(n) for g, n in running})
        return grew

    def _add_queues(
        self, conn: Connection, tq_ids: list[int], counts: Mapping[int, tuple[int, datetime]]
    ) -> None:
        rows = conn.execute(select(task_queues).where(task_queues.c.id.in_(tq_ids))).all()
        for row in rows:
            sample = conn.execute(
                select(jobs.c.jdl)
                .where(jobs.c.task_queue_id == row.id, jobs.c.state == JobState.WAITING.value)
                .order_by(jobs.c.id)
                .limit(1)
            ).scalar()
            waiting, oldest = counts[row.id]
            self.index.add(
                TaskQueue(
                    id=row.id,
                    owner_group=row.owner_group,
                    requirements=row.requirements,
                    rank=row.rank,
                    cpus=row.cpus,
                    whole_node=row.whole_node,
                    memory_mb=row.memory_mb,
                    wall_time_s=row.wall_time_s,
                    cpu_time_s=row.cpu_time_s,
                    priority=row.priority,
                    oldest_submitted=oldest.timestamp() if oldest is not None else 0.0,
                    waiting=waiting,
                    job_ad=representative_job_ad(sample or "", row.requirements, row.rank),
                )
            )
            self._queues.add(row.id)

    def jobs_changed(
        self, tq_ids: Iterable[int], *, released: Mapping[str, int] | None = None
    ) -> None:
        """Jobs of these queues became waiting or stopped waiting (submission, requeue, cancel,
        DAG release); ``released``: running jobs per group that ended. Wakes long polls when
        a queue grew."""
        queues = set(tq_ids)
        if released:
            with self._released_lock:
                self._released.update(released)
        if not queues:  # jobs only ended (a pilot's report batch): nothing to recount
            return
        with self.lock:
            self._apply_released()
            with self.db.read() as conn:
                grew = self._resync(conn, queues)
        if grew:
            self.notify()

    def _apply_released(self) -> None:
        """Apply the ended running jobs noted by :meth:`jobs_changed` (under ``lock``)."""
        with self._released_lock:
            released, self._released = self._released, Counter()
        for group, n in released.items():
            self.index.release(group, n)

    def queues_of(self, conn: Connection, job_ids: Iterable[int]) -> list[int]:
        """The task queues of these jobs and of their nodes (jobs just stored or cancelled), for
        :meth:`jobs_changed` once the transaction committed."""
        ids = sorted(job_ids)
        if not ids:
            return []
        stmt = (
            select(jobs.c.task_queue_id)
            .where(
                (jobs.c.id.in_(ids)) | (jobs.c.parent_id.in_(ids)),
                jobs.c.task_queue_id.is_not(None),
            )
            .distinct()
        )
        return [int(r[0]) for r in conn.execute(stmt)]

    def notify(self) -> None:
        if self.notifier is not None:
            self.notifier.notify()

    def forget_pilot(self, pilot_id: int) -> None:
        self._pilot_ads.pop(pilot_id, None)
        self._draining.discard(pilot_id)

    # --- handing out ------------------------------------------------------------------------

    def hand_out(self, pilot_id: int, request: WorkRequest) -> list[dict[str, Any]]:
        """Claim the best matching jobs for this pilot and return their job specs (possibly
        none). Raises ``PilotGone`` when the pilot is unknown, declared dead or deregistered."""
        max_jobs = min(request.max_jobs, self.max_jobs_per_request)
        if request.free_cores <= 0:
            max_jobs = 0
        prefetch = min(max(0, request.prefetch), self.max_jobs_per_request - max(0, max_jobs))
        if max_jobs <= 0 and prefetch <= 0:
            self._check_pilot(pilot_id)
            return []
        with self.lock:
            self._apply_released()
            if pilot_id in self._draining:
                with self.db.read() as conn:
                    if not self._check_state(conn, pilot_id):
                        return []
                self._draining.discard(pilot_id)
            base = self._pilot_ads.get(pilot_id)
            if base is None:
                with self.db.read() as conn:
                    base = self._pilot_ads[pilot_id] = load_pilot_ad(conn, pilot_id)
            ad = base.copy()
            for name, value in request.ad_update.items():
                if isinstance(value, bool | int | float | str):
                    ad[name] = value
            running = ad.evaluate("RunningJobs") if "RunningJobs" in ad else 0
            offer = SlotOffer(
                free_cores=request.free_cores,
                free_memory_mb=request.free_memory_mb,
                time_left_s=request.time_left_s,
                idle=not running,
            )
            queued = _queue_offer(ad, request.time_left_s)
            for _ in range(2):
                picks = self.index.match(ad, offer, max_jobs) if max_jobs > 0 else []
                if prefetch > 0 and queued is not None:
                    picks = self._queue_picks(ad, queued, prefetch, picks)
                if not picks:
                    with self.db.read() as conn:
                        self._check_state(conn, pilot_id)
                    return []
                wanted = Counter(picks)
                with self.db.write() as conn:
                    if not self._check_state(conn, pilot_id):
                        self._draining.add(pilot_id)
                        return []  # draining: no new work (see _check_state)
                    claimed = {tq: claim_jobs(conn, tq, n, pilot_id) for tq, n in wanted.items()}
                    specs = job_specs_for(conn, [c for cs in claimed.values() for c in cs])
                short = [tq for tq, n in wanted.items() if len(claimed[tq]) < n]
                for tq, rows in claimed.items():
                    if rows:
                        self.index.take(tq, len(rows))
                if short:
                    with self.db.read() as conn:
                        self._resync(conn, set(short))
                if specs:
                    return specs
            return []

    def _queue_picks(self, ad: ClassAd, load: SlotOffer, n: int, picks: list[int]) -> list[int]:
        """``picks`` (for the free slots) plus up to ``n`` task-queue picks for a pilot's
        prefetch queue, one slot-load (``load``, see :func:`_queue_offer`) at a time: each
        queued job fits the empty slot, and they start one load after another. The index counts
        nothing between loads, so picks beyond a queue's waiting jobs are dropped here: a
        claim that comes up short costs a recount, on the way to the pilot's answer."""
        left: dict[int, int] = {}
        for tq in picks:
            left[tq] = left.get(tq, self.index.waiting(tq)) - 1
        added = 0
        while added < n:
            more = []
            for tq in self.index.match(ad, load, n - added):
                room = left.get(tq, self.index.waiting(tq))
                if room > 0:
                    more.append(tq)
                    left[tq] = room - 1
            if not more:
                break
            picks = picks + more
            added += len(more)
        return picks

    def _check_pilot(self, pilot_id: int) -> None:
        with self.db.read() as conn:
            self._check_state(conn, pilot_id)

    @staticmethod
    def _check_state(conn: Connection, pilot_id: int) -> bool:
        """Whether the pilot may take new work: raises ``PilotGone`` when it ended, False
        while it drains (an administrator's drain, or the rolling upgrade's: the server
        marks the pilot draining before the agent even hears of it)."""
        state = conn.execute(_PILOT_STATE, {"id": pilot_id}).scalar()
        if state is None or state not in LIVE_STATES:
            raise PilotGone(pilot_id)
        return bool(state != DRAINING)


def _queue_offer(ad: ClassAd, time_left_s: float | None) -> SlotOffer | None:
    """One load of a pilot's prefetch queue: jobs that fit its whole slot (the registered
    ``Cpus`` and ``Memory``) together, never a whole-node job (that needs an empty pilot when
    it is matched). None when the ad does not say how big the slot is."""
    cores = ad.evaluate("Cpus") if "Cpus" in ad else None
    memory = ad.evaluate("Memory") if "Memory" in ad else None
    if not isinstance(cores, int) or isinstance(cores, bool) or cores <= 0:
        return None
    return SlotOffer(
        free_cores=cores,
        free_memory_mb=memory if isinstance(memory, int) and not isinstance(memory, bool) else None,
        time_left_s=time_left_s,
        idle=False,
    )


@dataclass(frozen=True)
class Claimed:
    """One job handed out: its id and the number of the new attempt."""

    job_id: int
    attempt: int


# The statements of a hand-out, built once (see lifecycle._STATES_OF).
_PILOT_STATE = select(pilots.c.state).where(pilots.c.id == bindparam("id"))
_PICK = (
    select(jobs.c.id)
    .where(jobs.c.state == JobState.WAITING.value, jobs.c.task_queue_id == bindparam("tq"))
    .order_by(jobs.c.id)
    .limit(bindparam("n"))
)
_PICK_LOCKED = _PICK.with_for_update(skip_locked=True)
_TAKE = (
    update(jobs)
    .where(
        jobs.c.id.in_(bindparam("ids", expanding=True)),
        jobs.c.state == JobState.WAITING.value,
    )
    .values(attempt=jobs.c.attempt + 1)
    .returning(jobs.c.id, jobs.c.attempt, jobs.c.parent_id)
)
_ATTEMPT_COLUMNS = (
    "job_id",
    "number",
    "pilot_id",
    "state",
    "payload_started",
    "started_at",
    "last_seen_at",
)
_SPEC_ROWS = select(
    jobs.c.id, jobs.c.jdl, jobs.c.cpus, jobs.c.whole_node, jobs.c.memory_mb, jobs.c.wall_time_s
).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
_SPEC_INPUTS = (
    select(job_inputs.c.job_id, job_inputs.c.name, job_inputs.c.digest, job_inputs.c.uri)
    .where(job_inputs.c.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(job_inputs.c.job_id, job_inputs.c.name)
)


def claim_jobs(
    conn: Connection, tq_id: int, n: int, pilot_id: int, *, now: datetime | None = None
) -> list[Claimed]:
    """Take up to ``n`` waiting jobs of task queue ``tq_id`` (oldest first) for ``pilot_id``:
    a new attempt each, WAITING -> READY. Atomic against concurrent claims (module docstring)."""
    now = now or utcnow()
    pick = _PICK_LOCKED if conn.dialect.name == "postgresql" else _PICK
    ids = [int(r[0]) for r in conn.execute(pick, {"tq": tq_id, "n": n})]
    if not ids:
        return []
    taken = conn.execute(_TAKE, {"ids": ids}).all()
    claimed = sorted((Claimed(int(r.id), int(r.attempt)) for r in taken), key=lambda c: c.job_id)
    parents = sorted({int(r.parent_id) for r in taken if r.parent_id is not None})
    if not claimed:
        return []
    by_attempt: dict[int, list[int]] = {}
    for c in claimed:
        by_attempt.setdefault(c.attempt, []).append(c.job_id)
    source = f"pilot:{pilot_id}"
    for number, job_ids in by_attempt.items():
        apply_transitions(
            conn,
            job_ids,
            JobState.READY,
            source=source,
            reason=f"matched pilot {pilot_id}",
            attempt=number,
            now=now,
            refresh_parents=False,
            from_state=JobState.WAITING,  # what _TAKE found them in
        )
    for parent_id in parents:
        refresh_parent(conn, parent_id, source=source, now=now)
    insert_rows(
        conn,
        attempts,
        _ATTEMPT_COLUMNS,
        [(c.job_id, c.attempt, pilot_id, "handed_out", False, now, now) for c in claimed],
    )
    return claimed


def job_specs_for(conn: Connection, claimed: list[Claimed]) -> list[dict[str, Any]]:
    """The job specs of the attempts just claimed, in claim order."""
    if not claimed:
        return []
    ids = [c.job_id for c in claimed]
    rows = {r.id: r for r in conn.execute(_SPEC_ROWS, {"ids": ids})}
    inputs: dict[int, list[tuple[str, str | None, str | None, int | None]]] = {}
    for r in conn.execute(_SPEC_INPUTS, {"ids": ids}):
        inputs.setdefault(r.job_id, []).append((r.name, r.digest, r.uri, None))
    specs: list[dict[str, Any]] = []
    for c in claimed:
        row = rows[c.job_id]
        specs.append(
            build_job_spec(
                job_id=c.job_id,
                attempt=c.attempt,
                jdl=row.jdl,
                cpus=row.cpus,
                whole_node=row.whole_node,
                memory_mb=row.memory_mb,
                wall_time_s=row.wall_time_s,
                inputs=inputs.get(c.job_id, []),
            )
        )
    return specs


__all__ = [
    "Claimed",
    "Dispatcher",
    "Notifier",
    "WorkRequest",
    "claim_jobs",
    "job_specs_for",
    "representative_job_ad",
]
