"""A pilot as the sizing policy sees it: the factory's batch view joined with the server's.

The factory knows every pilot it submitted by its batch id and asks the backend where it is
(queued, running, ended). The server knows the pilots whose agent registered -- the agent reports
``PILOTWMS_BATCH_ID``, which every backend's pilot script exports -- and what each is doing (idle,
busy with some cores free, draining, ended). Joining the two gives the policy's ``PilotPhase``
and tells the rate limiter which pilots started and which died before they ever registered.

Pure functions, like the policy: the daemon supplies both views and the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pilotwms.factory.backends.base import BatchState, PilotBatchState
from pilotwms.factory.policy import PilotPhase, PilotView

__all__ = [
    "AgentReport",
    "AgentState",
    "StartOutcome",
    "SubmittedPilot",
    "phase_of",
    "start_outcome",
    "views_by_queue",
]


class AgentState(StrEnum):
    """What the server says a registered pilot is doing."""

    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    ENDED = "ended"


@dataclass(frozen=True)
class AgentReport:
    """The server's view of one registered pilot; ``free_cores`` as its agent last reported."""

    state: AgentState
    free_cores: int | None = None


@dataclass(frozen=True)
class SubmittedPilot:
    """The factory's view of one pilot it submitted."""

    batch_id: str
    queue: str
    submitted_at: float
    batch: PilotBatchState
    #: submitted for sched_min, without an idle timeout
    warm: bool = False


class StartOutcome(StrEnum):
    STARTED = "started"  # its agent registered: the queue's pilots can start
    DIED = "died"  # it ended without ever registering: count against the queue


_AGENT_PHASE = {
    AgentState.IDLE: PilotPhase.IDLE,
    AgentState.BUSY: PilotPhase.BUSY,
    AgentState.DRAINING: PilotPhase.DRAINING,
}


def phase_of(pilot: SubmittedPilot, report: AgentReport | None) -> PilotPhase | None:
    """The pilot's phase for the policy, or None once it no longer occupies a batch slot.

    What the agent reports wins over the batch state (a pilot the batch system still lists as
    pending for a second may already have registered). A pilot the batch system does not know
    (yet) counts as queued: counting it is the safe side against submitting twice; the daemon
    forgets pilots that stay unknown.
    """
    if pilot.batch.state.ended:
        return None
    if report is not None:
        if report.state is AgentState.ENDED:
            return None
        return _AGENT_PHASE[report.state]
    if pilot.batch.state is BatchState.RUNNING:
        return PilotPhase.STARTING
    return PilotPhase.QUEUED


def views_by_queue(
    pilots: Sequence[SubmittedPilot], reports: Mapping[str, AgentReport]
) -> dict[str, list[PilotView]]:
    """The live pilots of every queue, ready for ``policy.plan``."""
    out: dict[str, list[PilotView]] = {}
    for pilot in pilots:
        report = reports.get(pilot.batch_id)
        phase = phase_of(pilot, report)
        if phase is None:
            continue
        free = report.free_cores if report is not None else None
        out.setdefault(pilot.queue, []).append(
            PilotView(pilot.batch_id, phase, pilot.submitted_at, free, pilot.warm)
        )
    return out


def start_outcome(pilot: SubmittedPilot, report: AgentReport | None) -> StartOutcome | None:
    """Whether this pilot proves the queue works, proves it broken, or says nothing yet.

    A pilot the factory cancelled says nothing; one that ended (finished or failed) without its
    agent ever registering died at start -- a broken Python, an unreachable server, a wrong
    path -- and slows the queue down.
    """
    if report is not None:
        return StartOutcome.STARTED
    if pilot.batch.state in (BatchState.FAILED, BatchState.FINISHED):
        return StartOutcome.DIED
    return None
