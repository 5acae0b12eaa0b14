"""Tables for the sizing policy: backlog vs pilots vs limits vs matching, the wait_new window,
sched_min keep-warm, Rank preference and overflow, cancellation, rate-limit pauses, and one case
per lgipilot bug that the old algorithm would have failed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pilotwms.factory.policy import (
    PilotPhase,
    PilotView,
    Plan,
    QueueInput,
    QueueLimits,
    QueueMemory,
    TaskQueueDemand,
    plan,
    record_expired,
)
from pilotwms.factory.ratelimit import RateGate

NOW = 10_000.0


def pilots(
    queue: str, phase: str, n: int, *, free: int | None = None, start: int = 0, warm: bool = False
) -> list:
    """``n`` pilots of one phase, submitted one second apart (older ones first)."""
    kind = "warm-" if warm else ""
    return [
        PilotView(
            f"{queue}-{kind}{phase}{i}", PilotPhase(phase), NOW - 1000 + start + i, free, warm
        )
        for i in range(n)
    ]


def queue(
    name: str = "a",
    *,
    cores: int = 1,
    smin: int = 0,
    smax: int = 10,
    wait_new: float = 0,
    pilots: list | None = None,
    gate: RateGate | None = None,
    memory: QueueMemory | None = None,
) -> QueueInput:
    return QueueInput(
        QueueLimits(name, cores, smin, smax, wait_new),
        tuple(pilots or ()),
        gate or RateGate.open(),
        memory or QueueMemory(),
    )


def tq(tq_id: str, waiting: int, cores: int = 1, **ranks: float) -> TaskQueueDemand:
    return TaskQueueDemand(tq_id, waiting, cores, ranks or {"a": 0.0})


@dataclass
class Case:
    id: str
    queues: list[QueueInput]
    demand: list[TaskQueueDemand]
    submit: dict[str, int]
    cancel: dict[str, int] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, int] = field(default_factory=dict)
    warm: dict[str, int] = field(default_factory=dict)


CASES = [
    # -- backlog against supply ---------------------------------------------------------------
    Case("nothing-to-do", [queue()], [], {"a": 0}, reason={"a": "no waiting job can run here"}),
    Case("backlog-no-pilots", [queue()], [tq("t", 5)], {"a": 5}),
    Case("idle-pilots-are-supply", [queue(pilots=pilots("a", "idle", 2))], [tq("t", 5)], {"a": 3}),
    Case(
        "queued-pilots-are-supply", [queue(pilots=pilots("a", "queued", 2))], [tq("t", 5)], {"a": 3}
    ),
    Case(
        "starting-pilots-are-supply",
        [queue(pilots=pilots("a", "starting", 2))],
        [tq("t", 5)],
        {"a": 3},
    ),
    Case(
        "busy-pilots-are-not-supply", [queue(pilots=pilots("a", "busy", 3))], [tq("t", 5)], {"a": 5}
    ),
    Case(
        "draining-pilots-are-not-supply",
        [queue(pilots=pilots("a", "draining", 3))],
        [tq("t", 5)],
        {"a": 5},
    ),
    Case("supply-covers-backlog", [queue(pilots=pilots("a", "idle", 5))], [tq("t", 5)], {"a": 0}),
    Case("empty-task-queue", [queue()], [tq("t", 0)], {"a": 0}),
    Case(
        "mixed-supply",
        [queue(pilots=pilots("a", "idle", 1) + pilots("a", "queued", 1) + pilots("a", "busy", 4))],
        [tq("t", 6)],
        {"a": 4},
    ),
    # -- limits ---------------------------------------------------------------------------------
    Case(
        "capped-by-sched-max",
        [queue(smax=3)],
        [tq("t", 5)],
        {"a": 3},
        reason={"a": "capped at sched_max=3"},
        unplaced={"t": 2},
    ),
    Case(
        "sched-max-counts-busy",
        [queue(smax=3, pilots=pilots("a", "busy", 2))],
        [tq("t", 5)],
        {"a": 1},
        unplaced={"t": 4},
    ),
    Case(
        "at-sched-max",
        [queue(smax=3, pilots=pilots("a", "busy", 3))],
        [tq("t", 5)],
        {"a": 0},
        reason={"a": "capped at sched_max=3 (3 alive): 5 job(s) left"},
        unplaced={"t": 5},
    ),
    Case(
        "sched-max-counts-draining",
        [queue(smax=3, pilots=pilots("a", "draining", 3))],
        [tq("t", 5)],
        {"a": 0},
        unplaced={"t": 5},
    ),
    Case("sched-max-zero", [queue(smax=0)], [tq("t", 5)], {"a": 0}, unplaced={"t": 5}),
    # -- matching: only where a waiting job can run -------------------------------------------
    Case(
        "demand-for-other-queue-only", [queue("a"), queue("b")], [tq("t", 4, b=1)], {"a": 0, "b": 4}
    ),
    Case(
        "unmatched-queue-gets-nothing-beyond-sched-min",
        [queue("a", smin=1), queue("b")],
        [tq("t", 4, b=1)],
        {"a": 1, "b": 4},
        reason={"a": "no waiting job can run here"},
    ),
    Case(
        "pilot-too-small-for-job",
        [queue(cores=4)],
        [tq("t", 2, cores=8)],
        {"a": 0},
        unplaced={"t": 2},
    ),
    # -- multi-core jobs count their cores --------------------------------------------------------
    Case("four-core-jobs-on-eight-core-pilots", [queue(cores=8)], [tq("t", 4, cores=4)], {"a": 2}),
    Case("odd-count-rounds-up", [queue(cores=8)], [tq("t", 3, cores=4)], {"a": 2}),
    Case("no-half-jobs-in-leftover-cores", [queue(cores=6)], [tq("t", 3, cores=4)], {"a": 3}),
    Case(
        "task-queues-share-new-pilots",
        [queue(cores=8)],
        [tq("big", 1, cores=6), tq("small", 4, cores=1)],
        {"a": 2},
    ),
    Case(
        "busy-pilot-with-free-cores-is-supply",
        [queue(cores=8, pilots=pilots("a", "busy", 1, free=4))],
        [tq("t", 4)],
        {"a": 0},
    ),
    Case(
        "idle-multicore-pilot-takes-several-jobs",
        [queue(cores=8, pilots=pilots("a", "idle", 1))],
        [tq("t", 2, cores=4)],
        {"a": 0},
    ),
    Case(
        "multicore-demand-against-idle-single-core",
        [queue(cores=8, pilots=pilots("a", "idle", 1, free=2))],
        [tq("t", 1, cores=4)],
        {"a": 1},
    ),
    # -- Rank preference and overflow -----------------------------------------------------------
    Case(
        "best-rank-gets-the-demand",
        [queue("a"), queue("b")],
        [tq("t", 5, a=1, b=5)],
        {"a": 0, "b": 5},
    ),
    Case(
        "overflow-past-sched-max",
        [queue("a"), queue("b", smax=2)],
        [tq("t", 5, a=1, b=5)],
        {"a": 3, "b": 2},
    ),
    Case(
        "rank-tie-goes-to-first-queue",
        [queue("a"), queue("b")],
        [tq("t", 3, a=2, b=2)],
        {"a": 3, "b": 0},
    ),
    Case(
        "overflow-past-paused-queue",
        [queue("a"), queue("b", gate=RateGate(0, paused=True, reason="paused by test"))],
        [tq("t", 5, a=1, b=5)],
        {"a": 5, "b": 0},
    ),
    Case(
        "no-overflow-while-best-queue-waits-out-wait-new",
        [queue("a"), queue("b", wait_new=60)],
        [tq("t", 5, a=1, b=5)],
        {"a": 0, "b": 0},
        reason={"b": "waiting for wait_new=60s"},
    ),
    Case(
        "no-overflow-while-best-queue-is-rate-limited",
        [queue("a"), queue("b", gate=RateGate(0, reason="rate limit: test"))],
        [tq("t", 5, a=1, b=5)],
        {"a": 0, "b": 0},
        reason={"b": "rate limit: test"},
    ),
    Case(
        "idle-pilots-on-worse-queue-used-before-new-on-better",
        [queue("a", pilots=pilots("a", "idle", 2)), queue("b")],
        [tq("t", 5, a=1, b=5)],
        {"a": 0, "b": 3},
    ),
    Case(
        "running-supply-before-queued-supply",
        [queue("a", pilots=pilots("a", "idle", 2)), queue("b", pilots=pilots("b", "queued", 2))],
        [tq("t", 2, a=1, b=5)],
        {"a": 0, "b": 0},
        cancel={"b": 2},
    ),
    Case(
        "earlier-task-queue-gets-supply-first",
        [queue("a", pilots=pilots("a", "idle", 1)), queue("b")],
        [tq("first", 1, a=1), tq("second", 1, a=5, b=1)],
        {"a": 1, "b": 0},
    ),
    Case(
        "all-matching-queues-full",
        [queue("a", smax=1), queue("b", smax=1)],
        [tq("t", 5, a=1, b=2)],
        {"a": 1, "b": 1},
        unplaced={"t": 3},
    ),
    # -- sched_min keep-warm ---------------------------------------------------------------------
    Case(
        "keep-warm-without-demand",
        [queue(smin=2)],
        [],
        {"a": 2},
        reason={"a": "keeping sched_min=2 warm (0 warm alive)"},
        warm={"a": 2},
    ),
    Case(
        "keep-warm-tops-up",
        [queue(smin=2, pilots=pilots("a", "idle", 1, warm=True))],
        [],
        {"a": 1},
        warm={"a": 1},
    ),
    Case(
        "keep-warm-counts-busy-warm-pilots",
        [queue(smin=2, pilots=pilots("a", "busy", 2, warm=True))],
        [],
        {"a": 0},
    ),
    Case(
        "ordinary-idle-pilots-are-not-warm",
        [queue(smin=2, pilots=pilots("a", "idle", 2))],
        [],
        {"a": 2},
        reason={"a": "keeping sched_min=2 warm (0 warm alive)"},
        warm={"a": 2},
    ),
    Case(
        "keep-warm-satisfied",
        [queue(smin=2, pilots=pilots("a", "idle", 2, warm=True))],
        [],
        {"a": 0},
    ),
    Case(
        "draining-is-not-warm",
        [queue(smin=2, pilots=pilots("a", "draining", 2, warm=True))],
        [],
        {"a": 2},
    ),
    Case(
        "keep-warm-ignores-wait-new",
        [queue(smin=2, wait_new=600)],
        [tq("t", 5)],
        {"a": 2},
        warm={"a": 2},
    ),
    Case("keep-warm-pilots-serve-demand", [queue(smin=2)], [tq("t", 2)], {"a": 2}, warm={"a": 2}),
    Case("keep-warm-within-demand", [queue(smin=2)], [tq("t", 5)], {"a": 5}, warm={"a": 2}),
    Case(
        "warm-pilots-are-supply",
        [queue(smin=2, pilots=pilots("a", "idle", 2, warm=True))],
        [tq("t", 5)],
        {"a": 3},
        warm={"a": 0},
    ),
    Case(
        "keep-warm-within-sched-max",
        [queue(smin=3, smax=3, pilots=pilots("a", "draining", 2, warm=True))],
        [],
        {"a": 1},
    ),
    # -- cancelling queued pilots that are not needed ------------------------------------------
    Case(
        "cancel-unneeded-queued",
        [queue(pilots=pilots("a", "queued", 3))],
        [],
        {"a": 0},
        cancel={"a": 3},
    ),
    Case(
        "cancel-keeps-sched-min-warm-pilots",
        [queue(smin=1, pilots=pilots("a", "queued", 3, warm=True))],
        [],
        {"a": 0},
        cancel={"a": 2},
    ),
    Case(
        "cancel-ordinary-before-warm",
        [
            queue(
                smin=1,
                pilots=pilots("a", "queued", 2) + pilots("a", "queued", 1, start=50, warm=True),
            )
        ],
        [],
        {"a": 0},
        cancel={"a": 2},
    ),
    Case(
        "cancel-only-the-surplus",
        [queue(pilots=pilots("a", "queued", 3))],
        [tq("t", 1)],
        {"a": 0},
        cancel={"a": 2},
    ),
    Case(
        "idle-pilots-are-never-cancelled",
        [queue(pilots=pilots("a", "idle", 3))],
        [],
        {"a": 0},
        cancel={"a": 0},
    ),
    Case(
        "idle-serve-first-queued-cancelled",
        [queue(pilots=pilots("a", "idle", 2) + pilots("a", "queued", 2))],
        [tq("t", 2)],
        {"a": 0},
        cancel={"a": 2},
    ),
    Case(
        "paused-queue-still-cancels",
        [queue(pilots=pilots("a", "queued", 2), gate=RateGate(0, paused=True, reason="paused"))],
        [],
        {"a": 0},
        cancel={"a": 2},
    ),
    # -- rate limiting -----------------------------------------------------------------------------
    Case(
        "rate-gate-caps",
        [queue(gate=RateGate(2, reason="rate limit: 58 in the last minute"))],
        [tq("t", 5)],
        {"a": 2},
        reason={"a": "rate limit"},
    ),
    Case(
        "backing-off",
        [queue(gate=RateGate(0, reason="backing off for 60s"))],
        [tq("t", 5)],
        {"a": 0},
        reason={"a": "backing off"},
    ),
    Case(
        "paused-submits-nothing",
        [queue(gate=RateGate(0, paused=True, reason="paused after 3 pilots"))],
        [tq("t", 5)],
        {"a": 0},
        reason={"a": "paused after 3"},
        unplaced={"t": 5},
    ),
    Case(
        "paused-no-keep-warm",
        [queue(smin=2, gate=RateGate(0, paused=True, reason="paused"))],
        [],
        {"a": 0},
    ),
    # -- lgipilot's bugs -------------------------------------------------------------------
    # (c) cap SchedMax - SchedMin - current counted the baseline twice: 9 pilots at most, not 10.
    Case(
        "lgipilot-baseline-not-counted-twice",
        [queue(smin=1, smax=10, pilots=pilots("a", "busy", 1, warm=True))],
        [tq("t", 100)],
        {"a": 9},
        unplaced={"t": 91},
        warm={"a": 0},
    ),
    Case(
        "lgipilot-baseline-not-counted-twice-idle",
        [queue(smin=1, smax=10, pilots=pilots("a", "idle", 1, warm=True))],
        [tq("t", 100)],
        {"a": 9},
        unplaced={"t": 90},
        warm={"a": 0},
    ),
    # baseline pilots submitted this cycle also serve the backlog: 2 pilots for 2 jobs, not 4.
    Case("lgipilot-baseline-serves-backlog", [queue(smin=2)], [tq("t", 2)], {"a": 2}),
]


def _run(case: Case) -> Plan:
    return plan(case.queues, case.demand, NOW)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_policy_table(case: Case) -> None:
    result = _run(case)
    assert {name: d.submit for name, d in result.decisions.items()} == case.submit
    for name, count in case.cancel.items():
        assert len(result.decisions[name].cancel) == count, result.decisions[name].reason
    for name, text in case.reason.items():
        assert text in result.decisions[name].reason
    assert result.unplaced == case.unplaced
    for name, count in case.warm.items():
        assert result.decisions[name].warm == count


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 20])
def test_exactly_the_missing_number_is_submitted(n: int) -> None:
    """lgipilot's loop ``range(1, n-1)`` submitted max(1, n-1) pilots when asked for n."""
    decision = plan([queue(smax=100)], [tq("t", n)], NOW).decisions["a"]
    assert decision.submit == n
    assert decision.missing == n


# -- the wait_new window ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backlog_since", "submit", "expected_since"),
    [
        (None, 0, NOW),  # backlog just appeared: remember when
        (NOW - 30, 0, NOW - 30),  # half-way through the window
        (NOW - 59.9, 0, NOW - 59.9),
        (NOW - 60, 5, NOW - 60),  # lasted the whole window
        (NOW - 600, 5, NOW - 600),
    ],
)
def test_backlog_must_last_wait_new(
    backlog_since: float | None, submit: int, expected_since: float
) -> None:
    inp = queue(wait_new=60, memory=QueueMemory(backlog_since=backlog_since))
    decision = plan([inp], [tq("t", 5)], NOW).decisions["a"]
    assert decision.submit == submit
    assert decision.memory.backlog_since == expected_since


def test_backlog_forgotten_when_supply_covers_it() -> None:
    inp = queue(
        wait_new=60, memory=QueueMemory(backlog_since=NOW - 100), pilots=pilots("a", "queued", 5)
    )
    decision = plan([inp], [tq("t", 5)], NOW).decisions["a"]
    assert decision.submit == 0
    assert decision.memory.backlog_since is None


def test_wait_new_then_no_second_burst() -> None:
    """After submitting, the new pilots are supply: the next cycle submits nothing more."""
    inp = queue(wait_new=60, memory=QueueMemory(backlog_since=NOW - 60))
    first = plan([inp], [tq("t", 5)], NOW).decisions["a"]
    assert first.submit == 5
    submitted = [PilotView(f"new{i}", PilotPhase.QUEUED, NOW) for i in range(first.submit)]
    again = queue(wait_new=60, memory=first.memory, pilots=submitted)
    second = plan([again], [tq("t", 5)], NOW + 10).decisions["a"]
    assert second.submit == 0
    assert second.cancel == ()


@pytest.mark.parametrize(
    ("surplus_since", "cancelled"),
    [(None, 0), (NOW - 59, 0), (NOW - 60, 3), (NOW - 3600, 3)],
)
def test_surplus_must_last_wait_new_before_cancelling(
    surplus_since: float | None, cancelled: int
) -> None:
    inp = queue(
        wait_new=60,
        pilots=pilots("a", "queued", 3),
        memory=QueueMemory(surplus_since=surplus_since),
    )
    decision = plan([inp], [], NOW).decisions["a"]
    assert len(decision.cancel) == cancelled
    assert decision.memory.surplus_since == (surplus_since if surplus_since else NOW)


def test_surplus_forgotten_when_demand_returns() -> None:
    inp = queue(
        wait_new=60, pilots=pilots("a", "queued", 3), memory=QueueMemory(surplus_since=NOW - 30)
    )
    decision = plan([inp], [tq("t", 3)], NOW).decisions["a"]
    assert decision.cancel == ()
    assert decision.memory.surplus_since is None


def test_newest_queued_pilots_are_cancelled_first() -> None:
    inp = queue(pilots=pilots("a", "queued", 3))
    decision = plan([inp], [], NOW).decisions["a"]
    assert decision.cancel == ("a-queued2", "a-queued1", "a-queued0")
    warm = queue(smin=1, pilots=pilots("a", "queued", 3, warm=True))
    decision = plan([warm], [], NOW).decisions["a"]
    assert decision.cancel == ("a-warm-queued2", "a-warm-queued1")


def test_warm_pilots_are_never_cancelled_below_sched_min() -> None:
    inp = queue(smin=2, pilots=pilots("a", "queued", 2, warm=True))
    decision = plan([inp], [], NOW).decisions["a"]
    assert (decision.submit, decision.cancel) == (0, ())


def test_reason_says_demand_and_supply() -> None:
    decision = plan([queue(pilots=pilots("a", "idle", 2))], [tq("t", 5)], NOW).decisions["a"]
    assert decision.reason == (
        "demand 5 cores from 1 task queue(s), supply 2 free cores; "
        "backlog needs 3 more pilot(s), lasted 0s; submitting 3"
    )
    assert (decision.demand_cores, decision.supply_cores, decision.missing) == (5, 2, 3)


def test_policy_is_deterministic_and_pure() -> None:
    inputs = [queue("a", pilots=pilots("a", "queued", 2)), queue("b", smin=1)]
    demand = [tq("t", 3, a=1, b=2), tq("u", 2, a=1)]
    assert plan(inputs, demand, NOW) == plan(inputs, demand, NOW)
    assert [len(i.pilots) for i in inputs] == [2, 0]


@pytest.mark.parametrize(
    ("age_h", "expired"), [(1, False), (167.9, False), (168, True), (24 * 8, True), (24 * 30, True)]
)
def test_record_expiry_counts_whole_days(age_h: float, expired: bool) -> None:
    """lgipilot's KeepJobs used ``timedelta.seconds`` (days dropped): 8-day-old pilots stayed."""
    assert record_expired(NOW - age_h * 3600, NOW, keep_hours=168) is expired
