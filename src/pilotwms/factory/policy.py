"""The factory's sizing policy: how many pilots each queue should submit or cancel now.

A pure function: demand, pilots, limits and the time go in; one decision per queue comes out,
with the reason in words for ``pilotwms factory status``. Nothing here reads a clock, the network
or the batch system, so the whole behaviour is pinned down by tables of cases.

The rules, and why:

* **Only where a waiting job can run.** Demand arrives already split by task queue, each with the
  Rank of every queue whose static ad its Requirements match (see ``demand``). A queue that no
  waiting job matches gets no pilots beyond ``sched_min`` -- the most common complaint about DIRAC
  and glideinWMS is pilots that can never run anything.
* **Supply before new pilots.** Cores of pilots that are starting, idle, or busy with cores to
  spare are counted against demand first (they will pull the jobs within seconds), then cores of
  pilots still queued in the batch system (oldest first: they start soonest); only the rest needs
  new pilots. Jobs are packed into pilots by cores, so an 8-core job needs a pilot with 8 free
  cores and four 2-core jobs fill one 8-core pilot.
* **Best Rank first.** Each task queue's remaining jobs go to its best-ranked queues first (ties:
  the queue listed first in the file); a queue that is at ``sched_max`` or paused passes the rest
  on to the next. A queue that is merely waiting out ``wait_new`` or its rate limit keeps its share,
  so that a short wait does not push work to a worse queue.
* **Keep-warm.** ``sched_min`` pilots are kept alive even with no demand at all: that is what
  ``sched_min`` means. Like lgipilot's baseline they are *warm* pilots, started without an idle
  timeout (``--wait-term 0``) so they do not exit and come back every ``wait_term``; they are
  submitted at once (no ``wait_new``), replaced when they end (``max_runtime``, walltime) and
  count as supply like any other pilot -- the baseline is never counted twice (lgipilot capped
  new pilots at ``SchedMax - SchedMin - current``, although ``current`` held the baseline).
* **``wait_new``.** Pilots beyond ``sched_min`` are added only when the backlog (demand this queue
  cannot cover with its supply) has lasted ``wait_new`` seconds; then exactly the missing number
  is submitted (lgipilot's loop submitted one pilot too few).
* **Limits.** A queue never has more than ``sched_max`` pilots alive, draining ones included
  (those it cancels in the same decision no longer count), and never submits more than its rate
  gate allows; a paused queue submits nothing.
* **Cancel what is no longer needed.** Queued pilots that no demand uses (warm ones only beyond
  ``sched_min``) are cancelled, newest first (they are furthest back in the batch queue), once
  the surplus has lasted ``wait_new`` seconds, so a momentary dip does not throw away queue
  positions. Pilots that already run are never cancelled here; idle ones leave by themselves
  after ``wait_term``.

The caller keeps one ``QueueMemory`` per queue (when its backlog and its surplus began) and feeds
each decision's ``memory`` back into the next cycle; it starts ``decision.warm`` of the
``decision.submit`` pilots as keep-warm pilots. With unchanged demand the decisions settle (no
submissions, no cancellations) within a few cycles: the pilots a decision asks for are exactly
the supply the next one counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pilotwms.factory.ratelimit import RateGate

__all__ = [
    "PilotPhase",
    "PilotView",
    "Plan",
    "QueueDecision",
    "QueueInput",
    "QueueLimits",
    "QueueMemory",
    "TaskQueueDemand",
    "plan",
    "record_expired",
]


class PilotPhase(StrEnum):
    """Where a live pilot is, as far as sizing cares."""

    QUEUED = "queued"  # accepted by the batch system, not running yet
    STARTING = "starting"  # running in the batch system, agent not registered yet
    IDLE = "idle"  # registered, no job
    BUSY = "busy"  # running jobs (may have cores to spare)
    DRAINING = "draining"  # finishing its jobs, takes no new ones


_RUNNING_TIER = (PilotPhase.IDLE, PilotPhase.STARTING, PilotPhase.BUSY)


@dataclass(frozen=True)
class PilotView:
    """One live pilot of a queue. ``free_cores`` is what it can still take; ``None`` means all
    its cores when queued, starting or idle and none when busy or draining. ``warm`` marks a
    keep-warm pilot (submitted for ``sched_min``, without an idle timeout)."""

    pilot_id: str
    phase: PilotPhase
    submitted_at: float = 0.0
    free_cores: int | None = None
    warm: bool = False


@dataclass(frozen=True)
class TaskQueueDemand:
    """Waiting jobs of one task queue and the queues that can run them.

    ``ranks`` maps the name of every queue whose static ad the task queue's Requirements match to
    the Rank of that ad (higher is better); queues it cannot match are absent.
    """

    tq_id: str
    waiting: int
    cores: int = 1
    ranks: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueLimits:
    """The part of a queue's configuration the policy uses."""

    name: str
    pilot_cores: int = 1
    sched_min: int = 0
    sched_max: int = 10
    wait_new: float = 60.0


@dataclass(frozen=True)
class QueueMemory:
    """What the policy remembers about a queue between cycles."""

    backlog_since: float | None = None
    surplus_since: float | None = None


@dataclass(frozen=True)
class QueueInput:
    """Everything the policy needs to know about one queue this cycle."""

    limits: QueueLimits
    pilots: Sequence[PilotView] = ()
    gate: RateGate = field(default_factory=RateGate.open)
    memory: QueueMemory = field(default_factory=QueueMemory)


@dataclass(frozen=True)
class QueueDecision:
    """What to do with one queue now, and why."""

    queue: str
    submit: int
    cancel: tuple[str, ...]
    reason: str
    memory: QueueMemory
    #: how many of ``submit`` are keep-warm pilots (to be started without an idle timeout)
    warm: int = 0
    #: cores of waiting jobs assigned to this queue (served by its supply or by new pilots)
    demand_cores: int = 0
    #: free cores of its live pilots before this cycle
    supply_cores: int = 0
    #: pilots the demand needs beyond the current supply
    missing: int = 0


@dataclass(frozen=True)
class Plan:
    """Decisions for every queue, plus the jobs no queue can currently take."""

    decisions: dict[str, QueueDecision]
    #: task queue id -> waiting jobs left without a pilot (every matching queue full or paused)
    unplaced: dict[str, int]


@dataclass
class _Slot:
    pilot_id: str
    free: int
    submitted_at: float = 0.0
    used: bool = False
    warm: bool = False


@dataclass
class _Work:
    order: int
    inp: QueueInput
    running: list[_Slot] = field(default_factory=list)
    queued: list[_Slot] = field(default_factory=list)
    planned: list[_Slot] = field(default_factory=list)
    demand_cores: int = 0
    matched_tqs: int = 0
    supply: int = 0
    #: jobs this queue had to pass on because it is full or paused
    passed_on: int = 0

    @property
    def name(self) -> str:
        return self.inp.limits.name

    @property
    def alive(self) -> int:
        return len(self.inp.pilots)

    @property
    def warm(self) -> int:
        """Keep-warm pilots that still take work."""
        return sum(1 for p in self.inp.pilots if p.warm and p.phase is not PilotPhase.DRAINING)

    def headroom(self) -> int:
        if self.inp.gate.paused:
            return 0
        return self.inp.limits.sched_max - self.alive - len(self.planned)


def _free(pilot: PilotView, cores: int) -> int:
    if pilot.free_cores is not None:
        return max(0, pilot.free_cores)
    if pilot.phase in (PilotPhase.QUEUED, PilotPhase.STARTING, PilotPhase.IDLE):
        return cores
    return 0


def _prepare(order: int, inp: QueueInput) -> _Work:
    work = _Work(order=order, inp=inp)
    cores = inp.limits.pilot_cores
    rank_in_tier = {PilotPhase.IDLE: 0, PilotPhase.STARTING: 1, PilotPhase.BUSY: 2}
    running = [p for p in inp.pilots if p.phase in _RUNNING_TIER]
    running.sort(key=lambda p: (rank_in_tier[p.phase], p.submitted_at, p.pilot_id))
    work.running = [_Slot(p.pilot_id, _free(p, cores), p.submitted_at) for p in running]
    queued = [p for p in inp.pilots if p.phase is PilotPhase.QUEUED]
    queued.sort(key=lambda p: (p.submitted_at, p.pilot_id))
    work.queued = [_Slot(p.pilot_id, _free(p, cores), p.submitted_at, warm=p.warm) for p in queued]
    work.supply = sum(s.free for s in work.running) + sum(s.free for s in work.queued)
    return work


def _pack(slots: list[_Slot], jobs: int, cores: int) -> int:
    """Put up to ``jobs`` jobs of ``cores`` cores into ``slots``; return how many did not fit."""
    for slot in slots:
        if jobs == 0:
            break
        fit = min(jobs, slot.free // cores)
        if fit:
            slot.free -= fit * cores
            slot.used = True
            jobs -= fit
    return jobs


def _span(seconds: float) -> str:
    return f"{seconds:.0f}s"


def plan(queues: Sequence[QueueInput], demand: Sequence[TaskQueueDemand], now: float) -> Plan:
    """Decide, for every queue, how many pilots to submit and which queued ones to cancel.

    ``demand`` is in the server's priority order: earlier task queues get supply first.
    ``queues`` is in configuration order, which breaks Rank ties.
    """
    works = {inp.limits.name: _prepare(i, inp) for i, inp in enumerate(queues)}
    remaining: dict[str, int] = {}
    candidates: dict[str, list[_Work]] = {}
    for tq in demand:
        cores = max(1, tq.cores)
        fitting = [
            works[name]
            for name in tq.ranks
            if name in works and works[name].inp.limits.pilot_cores >= cores
        ]
        fitting.sort(key=lambda w: (-tq.ranks[w.name], w.order))
        candidates[tq.tq_id] = fitting
        for work in fitting:
            work.matched_tqs += 1
        left = max(0, tq.waiting)
        # Pass 1: existing supply, pilots that already run before those still queued.
        for tier in ("running", "queued"):
            for work in fitting:
                before = left
                left = _pack(getattr(work, tier), left, cores)
                work.demand_cores += (before - left) * cores
        remaining[tq.tq_id] = left

    # Pass 2: what supply cannot cover becomes new pilots, best Rank first, overflowing only
    # past queues that cannot take more (sched_max reached or paused).
    unplaced: dict[str, int] = {}
    for tq in demand:
        left = remaining.get(tq.tq_id, 0)
        cores = max(1, tq.cores)
        for work in candidates.get(tq.tq_id, []):
            if left == 0:
                break
            before = left
            left = _pack(work.planned, left, cores)
            while left and work.headroom() > 0:
                work.planned.append(_Slot("", work.inp.limits.pilot_cores))
                left = _pack(work.planned[-1:], left, cores)
            work.demand_cores += (before - left) * cores
            work.passed_on += left
        if left:
            unplaced[tq.tq_id] = left

    decisions = {name: _decide(work, now) for name, work in works.items()}
    return Plan(decisions=decisions, unplaced=unplaced)


def _cancellation(work: _Work, now: float) -> tuple[tuple[str, ...], float | None, str | None]:
    """Queued pilots no demand uses (warm ones only beyond sched_min), newest first, once the
    surplus has lasted wait_new: ``(ids to cancel, surplus_since, reason)``."""
    limits = work.inp.limits
    unused = sorted(
        (s for s in work.queued if not s.used), key=lambda s: (-s.submitted_at, s.pilot_id)
    )
    warm_excess = max(0, work.warm - limits.sched_min)
    cancellable = []
    for slot in unused:
        if slot.warm:
            if warm_excess == 0:
                continue
            warm_excess -= 1
        cancellable.append(slot)
    if not cancellable:
        return (), None, None
    memory = work.inp.memory
    since = memory.surplus_since if memory.surplus_since is not None else now
    lasted = now - since
    if lasted >= limits.wait_new:
        ids = tuple(s.pilot_id for s in cancellable)
        return ids, since, f"cancelling {len(ids)} queued pilot(s) unneeded for {_span(lasted)}"
    return (
        (),
        since,
        f"{len(cancellable)} queued pilot(s) unneeded for {_span(lasted)}, "
        f"cancelling after wait_new={_span(limits.wait_new)}",
    )


def _decide(work: _Work, now: float) -> QueueDecision:
    limits = work.inp.limits
    gate = work.inp.gate
    memory = work.inp.memory
    reasons: list[str] = []
    missing = len(work.planned)

    if work.matched_tqs == 0:
        reasons.append("no waiting job can run here")
    else:
        reasons.append(
            f"demand {work.demand_cores} cores from {work.matched_tqs} task queue(s), "
            f"supply {work.supply} free cores"
        )

    backlog_since: float | None = None
    demand_submit = 0
    if missing:
        backlog_since = memory.backlog_since if memory.backlog_since is not None else now
        lasted = now - backlog_since
        if lasted >= limits.wait_new:
            demand_submit = missing
            reasons.append(f"backlog needs {missing} more pilot(s), lasted {_span(lasted)}")
        else:
            reasons.append(
                f"backlog needs {missing} more pilot(s) for {_span(lasted)}, "
                f"waiting for wait_new={_span(limits.wait_new)}"
            )

    warm_deficit = max(0, limits.sched_min - work.warm)
    if warm_deficit:
        reasons.append(f"keeping sched_min={limits.sched_min} warm ({work.warm} warm alive)")
    wanted = max(demand_submit, warm_deficit)

    cancel, surplus_since, cancel_reason = _cancellation(work, now)
    # Pilots cancelled now free their place under sched_max at once.
    alive = work.alive - len(cancel)
    headroom = max(0, limits.sched_max - alive)
    submit = min(wanted, headroom)
    if work.passed_on and not gate.paused:
        reasons.append(
            f"capped at sched_max={limits.sched_max} ({alive} alive): "
            f"{work.passed_on} job(s) left to other queues"
        )
    elif wanted > headroom:
        reasons.append(f"capped at sched_max={limits.sched_max} ({alive} alive)")
    if gate.paused:
        submit = 0
        reasons.append(gate.reason or "paused")
    elif submit > gate.allowed:
        submit = gate.allowed
        reasons.append(gate.reason or f"rate gate allows {gate.allowed} now")
    if cancel_reason:
        reasons.append(cancel_reason)

    warm = min(submit, warm_deficit)
    if submit:
        reasons.append(f"submitting {submit}" + (f" ({warm} warm)" if warm else ""))
    return QueueDecision(
        queue=limits.name,
        submit=submit,
        cancel=cancel,
        reason="; ".join(reasons),
        memory=QueueMemory(backlog_since=backlog_since, surplus_since=surplus_since),
        warm=warm,
        demand_cores=work.demand_cores,
        supply_cores=work.supply,
        missing=missing,
    )


def record_expired(ended_at: float, now: float, keep_hours: float) -> bool:
    """Whether an ended pilot's record and logs are older than ``keep_hours``.

    Compares total seconds: lgipilot used ``timedelta.seconds``, which drops whole days, so
    with its default of 168 hours nothing was ever removed.
    """
    return now - ended_at >= keep_hours * 3600.0
