"""Job states and the lifecycle transition table (gLite Logging & Bookkeeping semantics).

The lifecycle is data: ``TRANSITIONS`` maps every allowed ``(from, to)`` pair to the name of the
event that ``logging-info`` shows for it. ``server/logic/lifecycle.py`` is the one place that
applies a transition; everything else asks this table.

Deviations from gLite, on purpose:

* DONE is not terminal in gLite either (output can still be cleared), so ``TERMINAL`` follows
  LB's ``@terminal`` list (ABORTED, CANCELLED, CLEARED, PURGED) and ``FINISHED`` adds DONE: a
  finished job never runs again.
* PURGED is a real state here (gLite only used it for the R-GMA interface): a purged job keeps
  its row and events, its sandbox files are released for garbage collection.
* The state of a compound job (parametric, collection, DAG) is derived from its nodes
  (:func:`derive_parent_state`) and recorded with LB's ``CollectionState`` event, which LB always
  accepts; it is therefore not checked against this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class JobState(StrEnum):
    """gLite's job states (LB ``status.T``), without UNDEF and UNKNOWN."""

    SUBMITTED = "SUBMITTED"
    WAITING = "WAITING"
    READY = "READY"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ABORTED = "ABORTED"
    CANCELLED = "CANCELLED"
    CLEARED = "CLEARED"
    PURGED = "PURGED"


class DoneCode(StrEnum):
    """LB's ``done_code`` of a DONE job; a compound job is ``failed`` if any node failed."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobKind(StrEnum):
    JOB = "job"
    PARAMETRIC = "parametric"
    COLLECTION = "collection"
    DAG = "dag"


S = JobState

#: LB's terminal states: later events no longer change them (except the user's explicit
#: resubmission of a failed job or node, ``RESUBMIT_EVENT``; nothing automatic leaves them).
TERMINAL: frozenset[JobState] = frozenset({S.ABORTED, S.CANCELLED, S.CLEARED, S.PURGED})
#: States in which a job will never run again (its output, if any, is available).
FINISHED: frozenset[JobState] = TERMINAL | {S.DONE}
#: Handed to a pilot: the pilot owns the job until it reports or its lease expires.
ACTIVE: frozenset[JobState] = frozenset({S.READY, S.SCHEDULED, S.RUNNING})
#: Not yet handed out: a cancel takes effect at once, expiry applies.
WAITING_LIKE: frozenset[JobState] = frozenset({S.SUBMITTED, S.WAITING})
#: Released nodes of a compound job: what its ``max_nodes_running`` limits. WAITING counts
#: (as DAGMan's ``-maxjobs`` counts idle jobs in the queue): a node released to WAITING can be
#: handed to a pilot at any moment, so only counting it keeps the limit without the dispatcher
#: knowing about it. Nodes held back by the limit stay SUBMITTED.
IN_FLIGHT: frozenset[JobState] = frozenset({S.WAITING}) | ACTIVE
#: States from which a job may be purged (its records and sandboxes released).
PURGEABLE: frozenset[JobState] = frozenset({S.DONE, S.ABORTED, S.CANCELLED, S.CLEARED})

#: The event a new job is registered with (it has no state before).
REGISTER_EVENT = "RegJob"
#: The event recorded when a compound job's derived state changes.
COLLECTION_EVENT = "CollectionState"
#: The event of a failed or cancelled job (or node) that the user resubmitted (rescue).
RESUBMIT_EVENT = "UserResubmission"

_T: dict[tuple[JobState, JobState], str] = {
    # Accepted by the server: eligible for matching (DAG nodes wait in SUBMITTED for parents).
    (S.SUBMITTED, S.WAITING): "Accepted",
    # A pilot's request matched the job (WM EnQueued to the job controller).
    (S.WAITING, S.READY): "Match",
    # The pilot acknowledged the job (LogMonitor Accepted: the job is in the slot's hands).
    (S.READY, S.SCHEDULED): "Transfer",
    # The job wrapper started (payload start is an attempt attribute, not a state).
    (S.READY, S.RUNNING): "Running",
    (S.SCHEDULED, S.RUNNING): "Running",
    # Execution finished; done_code and exit_code say how.
    (S.RUNNING, S.DONE): "Done",
    # LB accepts a Done that overtakes the Running event (robustness rule of LBUG).
    (S.READY, S.DONE): "Done",
    (S.SCHEDULED, S.DONE): "Done",
    # Requeue after a lost lease or a failed attempt (deep or shallow resubmission).
    (S.READY, S.WAITING): "Resubmission",
    (S.SCHEDULED, S.WAITING): "Resubmission",
    (S.RUNNING, S.WAITING): "Resubmission",
    # Abort is accepted at every unfinished stage (expiry, retries exhausted, parent failed).
    (S.SUBMITTED, S.ABORTED): "Abort",
    (S.WAITING, S.ABORTED): "Abort",
    (S.READY, S.ABORTED): "Abort",
    (S.SCHEDULED, S.ABORTED): "Abort",
    (S.RUNNING, S.ABORTED): "Abort",
    # Cancel: immediate before a pilot holds the job, confirmed by the pilot afterwards.
    (S.SUBMITTED, S.CANCELLED): "Cancel",
    (S.WAITING, S.CANCELLED): "Cancel",
    (S.READY, S.CANCELLED): "Cancel",
    (S.SCHEDULED, S.CANCELLED): "Cancel",
    (S.RUNNING, S.CANCELLED): "Cancel",
    # The user retrieved the output sandbox.
    (S.DONE, S.CLEARED): "Clear",
    # Records and sandboxes released.
    (S.DONE, S.PURGED): "Purge",
    (S.ABORTED, S.PURGED): "Purge",
    (S.CANCELLED, S.PURGED): "Purge",
    (S.CLEARED, S.PURGED): "Purge",
    # Rescue: the user resubmits a job, or the nodes of a compound job, that did not end DONE
    # with exit code 0 (CLEARED: a failed job whose output was retrieved). The job keeps its
    # id and history and waits again in SUBMITTED; release makes it WAITING ("Accepted").
    (S.DONE, S.SUBMITTED): RESUBMIT_EVENT,
    (S.ABORTED, S.SUBMITTED): RESUBMIT_EVENT,
    (S.CANCELLED, S.SUBMITTED): RESUBMIT_EVENT,
    (S.CLEARED, S.SUBMITTED): RESUBMIT_EVENT,
}

#: The transition table: ``(from, to) -> event name``.
TRANSITIONS: Mapping[tuple[JobState, JobState], str] = _T


def transition_event(from_: JobState, to: JobState) -> str | None:
    """The event name of an allowed transition, ``None`` when the table forbids it."""
    return _T.get((from_, to))


def why_illegal(from_: JobState, to: JobState) -> str:
    """A human cause for a transition the table forbids (used in ``IllegalTransition``)."""
    if from_ == to:
        return f"the job is already {to}"
    if from_ in TERMINAL:
        return f"{from_} is terminal"
    if from_ == S.DONE:
        return (
            "the job has finished; only clearing its output, purging it or resubmitting it "
            "(when it failed) is possible"
        )
    allowed = sorted(t for (f, t) in _T if f == from_)
    return f"from {from_} a job can only go to {', '.join(allowed)}"


def derive_parent_state(
    counts: Mapping[JobState, int], failed_done: int = 0
) -> tuple[JobState, DoneCode | None]:
    """The state of a compound job from the number of its nodes in each state (LB semantics).

    ``failed_done`` is how many of the DONE/CLEARED nodes did not end ``done_code = ok`` with exit
    code 0. Rules, first match wins:

    * no nodes: SUBMITTED;
    * every node finished: CLEARED if all cleared, PURGED if all purged, DONE (ok, or failed when a
      node failed) if all ended DONE or CLEARED, else ABORTED if any node aborted, else CANCELLED;
    * a node is RUNNING: RUNNING; else a node is SCHEDULED: SCHEDULED; else READY: READY;
    * some node is WAITING or already finished: WAITING (the compound job is in progress);
    * otherwise (all unfinished nodes SUBMITTED): SUBMITTED.
    """
    total = sum(counts.values())
    if total == 0:
        return S.SUBMITTED, None

    def n(state: JobState) -> int:
        return counts.get(state, 0)

    finished = sum(n(s) for s in FINISHED)
    if finished == total:
        if n(S.PURGED) == total:
            return S.PURGED, None
        if n(S.CLEARED) + n(S.PURGED) == total and n(S.CLEARED):
            return S.CLEARED, None
        if n(S.DONE) + n(S.CLEARED) + n(S.PURGED) == total:
            return S.DONE, DoneCode.FAILED if failed_done else DoneCode.OK
        if n(S.ABORTED):
            return S.ABORTED, None
        return S.CANCELLED, None
    for state in (S.RUNNING, S.SCHEDULED, S.READY):
        if n(state):
            return state, None
    if n(S.WAITING) or finished:
        return S.WAITING, None
    return S.SUBMITTED, None


__all__ = [
    "ACTIVE",
    "COLLECTION_EVENT",
    "FINISHED",
    "IN_FLIGHT",
    "PURGEABLE",
    "REGISTER_EVENT",
    "RESUBMIT_EVENT",
    "TERMINAL",
    "TRANSITIONS",
    "WAITING_LIKE",
    "DoneCode",
    "JobKind",
    "JobState",
    "derive_parent_state",
    "transition_event",
    "why_illegal",
]
