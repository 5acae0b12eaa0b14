"""Properties of the sizing policy over random queues, pilots, gates and demand: the limits are
never exceeded, queues no waiting job can use get at most their keep-warm pilots, a queue never
submits and cancels at once, and applying a decision then planning again changes nothing."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pilotwms.factory.policy import (
    PilotPhase,
    PilotView,
    QueueInput,
    QueueLimits,
    QueueMemory,
    TaskQueueDemand,
    plan,
)
from pilotwms.factory.ratelimit import RateGate

NOW = 5_000.0
NAMES = ["a", "b", "c"]


@st.composite
def queue_inputs(draw: st.DrawFn, name: str, open_gates: bool) -> QueueInput:
    cores = draw(st.sampled_from([1, 2, 4, 8]))
    smin = draw(st.integers(0, 3))
    smax = draw(st.integers(smin, 8))
    wait_new = draw(st.sampled_from([0.0, 60.0]))
    phases = draw(st.lists(st.sampled_from(list(PilotPhase)), max_size=smax))
    pilots = []
    for i, phase in enumerate(phases):
        free = None
        if phase is PilotPhase.BUSY:
            free = draw(st.one_of(st.none(), st.integers(0, cores)))
        warm = draw(st.booleans())
        pilots.append(PilotView(f"{name}{i}", phase, NOW - draw(st.integers(0, 500)), free, warm))
    if open_gates:
        gate = RateGate.open()
    else:
        gate = draw(
            st.sampled_from(
                [RateGate.open(), RateGate(2, reason="rate"), RateGate(0, True, "paused")]
            )
        )
    since = st.one_of(st.none(), st.sampled_from([NOW, NOW - 30, NOW - 120]))
    memory = QueueMemory(draw(since), draw(since))
    return QueueInput(QueueLimits(name, cores, smin, smax, wait_new), tuple(pilots), gate, memory)


@st.composite
def scenarios(draw: st.DrawFn, open_gates: bool = False) -> tuple:
    count = draw(st.integers(1, 3))
    queues = [draw(queue_inputs(NAMES[i], open_gates)) for i in range(count)]
    demand = []
    for i in range(draw(st.integers(0, 4))):
        ranks = draw(st.dictionaries(st.sampled_from(NAMES[:count]), st.integers(-3, 3).map(float)))
        demand.append(
            TaskQueueDemand(
                f"t{i}", draw(st.integers(0, 30)), draw(st.sampled_from([1, 2, 4, 8])), ranks
            )
        )
    return queues, demand


def _usable(queue: QueueInput, demand: list[TaskQueueDemand]) -> bool:
    return any(
        queue.limits.name in tq.ranks and tq.waiting > 0 and tq.cores <= queue.limits.pilot_cores
        for tq in demand
    )


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_limits_and_matching_are_respected(scenario: tuple) -> None:
    queues, demand = scenario
    decisions = plan(queues, demand, NOW).decisions
    for queue in queues:
        decision = decisions[queue.limits.name]
        limits = queue.limits
        alive = len(queue.pilots)
        warm = sum(1 for p in queue.pilots if p.warm and p.phase is not PilotPhase.DRAINING)
        # pilots cancelled in the same decision free their place under sched_max
        assert 0 <= decision.submit <= max(0, limits.sched_max - alive + len(decision.cancel))
        assert decision.submit <= queue.gate.allowed
        if queue.gate.paused:
            assert decision.submit == 0
        assert 0 <= decision.warm <= min(decision.submit, max(0, limits.sched_min - warm))
        if not _usable(queue, demand):
            assert decision.submit <= max(0, limits.sched_min - warm)
        queued = {p.pilot_id: p for p in queue.pilots if p.phase is PilotPhase.QUEUED}
        assert set(decision.cancel) <= set(queued)
        cancelled_warm = sum(1 for i in decision.cancel if queued[i].warm)
        assert cancelled_warm <= max(0, warm - limits.sched_min)
        if decision.submit and decision.cancel:
            # only when ordinary queued pilots are unneeded while warm ones are missing
            assert decision.submit == decision.warm
            assert cancelled_warm == 0
        assert decision.reason


def _apply(queues: list[QueueInput], decisions: dict, round_: int) -> list[QueueInput]:
    after = []
    for queue in queues:
        decision = decisions[queue.limits.name]
        kept = [p for p in queue.pilots if p.pilot_id not in decision.cancel]
        new = [
            PilotView(
                f"{queue.limits.name}-r{round_}-{i}", PilotPhase.QUEUED, NOW, warm=i < decision.warm
            )
            for i in range(decision.submit)
        ]
        after.append(replace(queue, pilots=tuple(kept + new), memory=decision.memory))
    return after


@settings(max_examples=300, deadline=None)
@given(scenarios(open_gates=True))
def test_applying_decisions_settles(scenario: tuple) -> None:
    """Cycle after cycle with unchanged demand, the factory reaches a state where it neither
    submits nor cancels (no flapping). Late binding makes one cycle not always enough: a new
    pilot may attract jobs another queue's queued pilot was counted for."""
    queues, demand = scenario
    decisions = plan(queues, demand, NOW).decisions
    for round_ in range(1, 6):
        queues = _apply(queues, decisions, round_)
        decisions = plan(queues, demand, NOW).decisions
        if all(d.submit == 0 and d.cancel == () for d in decisions.values()):
            return
    raise AssertionError(f"still changing after 5 cycles: {decisions}")
