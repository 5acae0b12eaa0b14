"""The lifecycle as data: transition table and derived state of compound jobs (pure)."""

from __future__ import annotations

import pytest

from pilotwms.core.states import (
    ACTIVE,
    FINISHED,
    RESUBMIT_EVENT,
    TERMINAL,
    TRANSITIONS,
    WAITING_LIKE,
    DoneCode,
    JobState,
    derive_parent_state,
    transition_event,
    why_illegal,
)

S = JobState

ALLOWED = [
    (S.SUBMITTED, S.WAITING, "Accepted"),
    (S.WAITING, S.READY, "Match"),
    (S.READY, S.SCHEDULED, "Transfer"),
    (S.SCHEDULED, S.RUNNING, "Running"),
    (S.READY, S.RUNNING, "Running"),
    (S.RUNNING, S.DONE, "Done"),
    (S.READY, S.WAITING, "Resubmission"),
    (S.SCHEDULED, S.WAITING, "Resubmission"),
    (S.RUNNING, S.WAITING, "Resubmission"),
    (S.WAITING, S.ABORTED, "Abort"),
    (S.SUBMITTED, S.ABORTED, "Abort"),
    (S.RUNNING, S.ABORTED, "Abort"),
    (S.WAITING, S.CANCELLED, "Cancel"),
    (S.RUNNING, S.CANCELLED, "Cancel"),
    (S.DONE, S.CLEARED, "Clear"),
    (S.DONE, S.PURGED, "Purge"),
    (S.ABORTED, S.PURGED, "Purge"),
    (S.CANCELLED, S.PURGED, "Purge"),
    (S.CLEARED, S.PURGED, "Purge"),
]

FORBIDDEN = [
    (S.WAITING, S.RUNNING),
    (S.SUBMITTED, S.RUNNING),
    (S.DONE, S.RUNNING),
    (S.DONE, S.WAITING),
    (S.ABORTED, S.WAITING),
    (S.CANCELLED, S.DONE),
    (S.CLEARED, S.DONE),
    (S.PURGED, S.DONE),
    (S.WAITING, S.CLEARED),
    (S.WAITING, S.PURGED),
    (S.WAITING, S.WAITING),
    (S.DONE, S.CANCELLED),
]


@pytest.mark.parametrize(("from_", "to", "event"), ALLOWED)
def test_allowed_transition_names_its_event(from_: JobState, to: JobState, event: str) -> None:
    assert transition_event(from_, to) == event


@pytest.mark.parametrize(("from_", "to"), FORBIDDEN)
def test_forbidden_transition_has_no_event_and_a_cause(from_: JobState, to: JobState) -> None:
    assert transition_event(from_, to) is None
    assert why_illegal(from_, to)


def test_terminal_states_have_no_way_out_except_purge_and_resubmission() -> None:
    for (from_, to), event in TRANSITIONS.items():
        if from_ in TERMINAL:
            assert from_ != S.PURGED
            assert to == S.PURGED or (to == S.SUBMITTED and event == RESUBMIT_EVENT)


def test_only_the_user_resubmission_leaves_a_finished_state_for_submitted() -> None:
    into_submitted = {f for (f, t) in TRANSITIONS if t == S.SUBMITTED}
    assert into_submitted == {S.DONE, S.ABORTED, S.CANCELLED, S.CLEARED}
    assert {transition_event(f, S.SUBMITTED) for f in into_submitted} == {RESUBMIT_EVENT}


def test_named_sets_partition_the_states() -> None:
    assert set(JobState) == WAITING_LIKE | ACTIVE | FINISHED
    assert not WAITING_LIKE & ACTIVE
    assert not ACTIVE & FINISHED


def test_requeue_transitions_needed_by_the_pilot_protocol_exist() -> None:
    for state in (S.READY, S.SCHEDULED, S.RUNNING):
        assert transition_event(state, S.WAITING) == "Resubmission"


def c(**counts: int) -> dict[JobState, int]:
    return {S[k]: v for k, v in counts.items()}


PARENT_CASES = [
    ({}, 0, S.SUBMITTED, None),
    (c(WAITING=3), 0, S.WAITING, None),
    (c(SUBMITTED=2), 0, S.SUBMITTED, None),
    (c(SUBMITTED=2, WAITING=1), 0, S.WAITING, None),
    (c(WAITING=2, READY=1), 0, S.READY, None),
    (c(WAITING=2, SCHEDULED=1, READY=1), 0, S.SCHEDULED, None),
    (c(WAITING=2, RUNNING=1, SCHEDULED=1), 0, S.RUNNING, None),
    (c(DONE=1, SUBMITTED=1), 0, S.WAITING, None),
    (c(DONE=3), 0, S.DONE, DoneCode.OK),
    (c(DONE=3), 1, S.DONE, DoneCode.FAILED),
    (c(DONE=2, CLEARED=1), 0, S.DONE, DoneCode.OK),
    (c(CLEARED=3), 0, S.CLEARED, None),
    (c(DONE=2, ABORTED=1), 0, S.ABORTED, None),
    (c(DONE=2, CANCELLED=1), 0, S.CANCELLED, None),
    (c(ABORTED=1, CANCELLED=1), 0, S.ABORTED, None),
    (c(CANCELLED=2, RUNNING=1), 0, S.RUNNING, None),
    (c(PURGED=4), 0, S.PURGED, None),
    (c(PURGED=1, CLEARED=1), 0, S.CLEARED, None),
]


@pytest.mark.parametrize(("counts", "failed", "state", "code"), PARENT_CASES)
def test_parent_state_is_derived_from_nodes(
    counts: dict[JobState, int], failed: int, state: JobState, code: DoneCode | None
) -> None:
    assert derive_parent_state(counts, failed) == (state, code)
