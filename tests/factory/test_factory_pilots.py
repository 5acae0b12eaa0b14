"""Joining the factory's batch view of a pilot with the server's report of its agent: the phase
the policy sees, and which pilots prove a queue works or died at start."""

from __future__ import annotations

import pytest

from pilotwms.factory.backends import BatchState, PilotBatchState
from pilotwms.factory.pilots import (
    AgentReport,
    AgentState,
    StartOutcome,
    SubmittedPilot,
    phase_of,
    start_outcome,
    views_by_queue,
)
from pilotwms.factory.policy import PilotPhase, PilotView

B = BatchState
A = AgentState


def pilot(state: BatchState, batch_id: str = "42", queue: str = "q") -> SubmittedPilot:
    return SubmittedPilot(batch_id, queue, 100.0, PilotBatchState(state))


@pytest.mark.parametrize(
    ("batch", "agent", "phase", "outcome"),
    [
        (B.QUEUED, None, PilotPhase.QUEUED, None),
        (B.UNKNOWN, None, PilotPhase.QUEUED, None),  # just submitted, not listed yet
        (B.RUNNING, None, PilotPhase.STARTING, None),
        (B.RUNNING, A.IDLE, PilotPhase.IDLE, StartOutcome.STARTED),
        (B.QUEUED, A.IDLE, PilotPhase.IDLE, StartOutcome.STARTED),  # the agent is ahead
        (B.RUNNING, A.BUSY, PilotPhase.BUSY, StartOutcome.STARTED),
        (B.RUNNING, A.DRAINING, PilotPhase.DRAINING, StartOutcome.STARTED),
        (B.RUNNING, A.ENDED, None, StartOutcome.STARTED),
        (B.FINISHED, A.ENDED, None, StartOutcome.STARTED),
        (B.FAILED, A.BUSY, None, StartOutcome.STARTED),  # killed while working: not a start failure
        (B.FAILED, None, None, StartOutcome.DIED),
        (B.FINISHED, None, None, StartOutcome.DIED),  # gave up without reaching the server
        (B.CANCELLED, None, None, None),  # the factory cancelled it: says nothing
    ],
)
def test_phase_and_start_outcome(
    batch: BatchState,
    agent: AgentState | None,
    phase: PilotPhase | None,
    outcome: StartOutcome | None,
) -> None:
    report = AgentReport(agent) if agent is not None else None
    assert phase_of(pilot(batch), report) == phase
    assert start_outcome(pilot(batch), report) == outcome


def test_views_by_queue() -> None:
    pilots = [
        pilot(B.QUEUED, "1", "a"),
        pilot(B.RUNNING, "2", "a"),
        pilot(B.RUNNING, "3", "b"),
        pilot(B.FINISHED, "4", "b"),
    ]
    reports = {"3": AgentReport(A.BUSY, free_cores=2), "4": AgentReport(A.ENDED)}
    assert views_by_queue(pilots, reports) == {
        "a": [
            PilotView("1", PilotPhase.QUEUED, 100.0, None),
            PilotView("2", PilotPhase.STARTING, 100.0, None),
        ],
        "b": [PilotView("3", PilotPhase.BUSY, 100.0, 2)],
    }


def test_warm_flag_is_carried_to_the_policy() -> None:
    warm = SubmittedPilot("7", "q", 1.0, PilotBatchState(B.QUEUED), warm=True)
    assert views_by_queue([warm], {}) == {"q": [PilotView("7", PilotPhase.QUEUED, 1.0, None, True)]}
