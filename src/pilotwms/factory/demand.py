"""Where the factory's demand comes from, and which queues can serve it.

``DemandSource`` is the seam between the factory and the server: the daemon asks it for the
waiting task queues (each with a representative job ad: its Requirements, its Rank and the
attributes they use) and for what the registered pilots are doing (``pilots.AgentReport``, by
batch id). The server's demand API arrives with the matcher; until then only tests implement it.

``match_demand`` evaluates every task queue's Requirements against the static slot ad of every
queue (``config.slot_attributes``, the same attributes the pilot will publish) with the ClassAd
engine, and keeps, per task queue, the Rank of each queue it matches -- the input of
``policy.plan``. Task queues that match no queue are returned apart, so ``factory status`` can
say that nothing here can run them instead of submitting pilots that would idle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pilotwms.factory.config import QueueConfig, slot_attributes
from pilotwms.factory.pilots import AgentReport
from pilotwms.factory.policy import TaskQueueDemand

__all__ = ["DemandMatch", "DemandSource", "TaskQueueSnapshot", "match_demand"]


@dataclass(frozen=True)
class TaskQueueSnapshot:
    """Waiting jobs of one task queue as the server reports them."""

    tq_id: str
    waiting: int
    #: cores each job needs
    cores: int
    #: ClassAd text of a representative job: Requirements, Rank and what they refer to
    ad: str


class DemandSource(Protocol):
    """What the factory daemon needs from the server each cycle."""

    def task_queues(self) -> Sequence[TaskQueueSnapshot]:
        """Waiting task queues in the server's priority order."""
        ...

    def agent_reports(self) -> Mapping[str, AgentReport]:
        """What every registered pilot is doing, by the batch id its agent reported."""
        ...


@dataclass(frozen=True)
class DemandMatch:
    """Demand ready for the policy, and what could not be placed anywhere."""

    demand: list[TaskQueueDemand]
    #: task queue id -> waiting jobs, for task queues no configured queue can run
    unmatched: dict[str, int] = field(default_factory=dict)
    #: task queue id -> why its ad could not be evaluated
    problems: dict[str, str] = field(default_factory=dict)


def match_demand(
    snapshots: Sequence[TaskQueueSnapshot], queues: Sequence[QueueConfig]
) -> DemandMatch:
    """Evaluate each task queue's Requirements and Rank against each queue's slot ad."""
    from pilotwms.classad import ClassAd, ClassAdSyntaxError, matches, parse_ad, rank

    slots = [(q.name, ClassAd.from_python(slot_attributes(q))) for q in queues]
    demand: list[TaskQueueDemand] = []
    unmatched: dict[str, int] = {}
    problems: dict[str, str] = {}
    for tq in snapshots:
        try:
            job = parse_ad(tq.ad)
        except ClassAdSyntaxError as exc:
            problems[tq.tq_id] = f"the job ad does not parse: {exc}"
            continue
        ranks = {name: float(rank(job, slot)) for name, slot in slots if matches(job, slot)}
        if not ranks:
            unmatched[tq.tq_id] = tq.waiting
            continue
        demand.append(TaskQueueDemand(tq.tq_id, tq.waiting, tq.cores, ranks))
    return DemandMatch(demand, unmatched, problems)
