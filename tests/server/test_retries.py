"""Retry decisions (gLite's deep and shallow resubmission) and the lease rule."""

from __future__ import annotations

import pytest

from pilotwms.server.logic.retries import (
    AttemptEnd,
    Decision,
    EndStatus,
    LiveAttempt,
    RetryBudget,
    Verdict,
    decide,
    expired_attempts,
    lease_timeout,
)

E = EndStatus
V = Verdict
BUDGET = RetryBudget(retry_count=3, shallow_retry_count=2)


@pytest.mark.parametrize(
    ("end", "verdict", "reason", "used"),
    [
        (AttemptEnd(E.DONE, True, 0), V.DONE_OK, "", (0, 0)),
        # a payload that ran and failed is Done (Exit Code != 0), never resubmitted
        (AttemptEnd(E.FAILED, True, 3), V.DONE_FAILED, "exit code 3", (0, 0)),
        (AttemptEnd(E.FAILED, True, None, 9), V.DONE_FAILED, "killed by signal 9", (0, 0)),
        (
            AttemptEnd(E.FAILED, True, 0, reason="epilogue failed"),
            V.DONE_FAILED,
            "exit code 0: epilogue failed",
            (0, 0),
        ),
        (AttemptEnd(E.FAILED, False), V.DONE_FAILED, "the job failed", (0, 0)),
        (
            AttemptEnd(E.KILLED_WALLTIME, True),
            V.DONE_FAILED,
            "the job exceeded its wall-clock time limit",
            (0, 0),
        ),
        (
            AttemptEnd(E.KILLED_MEMORY, True, reason="RSS 4100 MB over 4000 MB"),
            V.DONE_FAILED,
            "RSS 4100 MB over 4000 MB",
            (0, 0),
        ),
        (AttemptEnd(E.CANCELLED, True), V.CANCELLED, "cancelled by the user", (0, 0)),
        (
            AttemptEnd(E.REFUSED),
            V.REQUEUE,
            "the pilot refused the job; requeued",
            (0, 0),
        ),
        (
            AttemptEnd(E.SETUP_FAILED, reason="input sandbox not stageable"),
            V.SHALLOW_RETRY,
            "input sandbox not stageable; resubmitted (shallow, 1 of 2)",
            (0, 1),
        ),
        # drained is the pilot's fault: shallow even after the payload started
        (
            AttemptEnd(E.DRAINED, True),
            V.SHALLOW_RETRY,
            "the pilot was drained; resubmitted (shallow, 1 of 2)",
            (0, 1),
        ),
        (
            AttemptEnd(E.LEASE_EXPIRED, False),
            V.SHALLOW_RETRY,
            "the pilot stopped sending heartbeats (lease expired); resubmitted (shallow, 1 of 2)",
            (0, 1),
        ),
        (
            AttemptEnd(E.LEASE_EXPIRED, True),
            V.DEEP_RETRY,
            "the pilot stopped sending heartbeats (lease expired); resubmitted (deep, 1 of 3)",
            (1, 0),
        ),
    ],
)
def test_decision_per_end_status(
    end: AttemptEnd, verdict: Verdict, reason: str, used: tuple[int, int]
) -> None:
    d = decide(end, BUDGET)
    assert (d.verdict, d.reason, (d.retries_used, d.shallow_retries_used)) == (
        verdict,
        reason,
        used,
    )


def test_exit_codes_are_kept() -> None:
    assert decide(AttemptEnd(E.DONE, True), BUDGET).exit_code == 0
    assert decide(AttemptEnd(E.FAILED, True, 42), BUDGET).exit_code == 42


LOST = "lost"  # reason used below to keep the expected texts short


@pytest.mark.parametrize(
    ("budget", "payload_started", "verdict", "reason"),
    [
        # deep: the job's limit first, then the server cap (gLite's check_deep_count)
        (RetryBudget(3, 2, retries_used=2), True, V.DEEP_RETRY, "lost; resubmitted (deep, 3 of 3)"),
        (RetryBudget(3, 2, retries_used=3), True, V.ABORTED, "lost; hit job retry count (3)"),
        (RetryBudget(0, 2), True, V.ABORTED, "lost; hit job retry count (0)"),
        (RetryBudget(None, 2), True, V.ABORTED, "lost; hit job retry count (0)"),
        (RetryBudget(-5, 2), True, V.ABORTED, "lost; hit job retry count (0)"),
        (
            RetryBudget(20, 2, retries_used=9),
            True,
            V.DEEP_RETRY,
            "lost; resubmitted (deep, 10 of 10)",
        ),
        (RetryBudget(20, 2, retries_used=10), True, V.ABORTED, "lost; hit max retry count (10)"),
        (
            RetryBudget(20, 2, retries_used=4, max_retry_count=4),
            True,
            V.ABORTED,
            "lost; hit max retry count (4)",
        ),
        # shallow: likewise with ShallowRetryCount
        (
            RetryBudget(3, 2, shallow_retries_used=1),
            False,
            V.SHALLOW_RETRY,
            "lost; resubmitted (shallow, 2 of 2)",
        ),
        (
            RetryBudget(3, 2, shallow_retries_used=2),
            False,
            V.ABORTED,
            "lost; hit job shallow retry count (2)",
        ),
        (RetryBudget(3, 0), False, V.ABORTED, "lost; hit job shallow retry count (0)"),
        (RetryBudget(3, None), False, V.ABORTED, "lost; hit job shallow retry count (0)"),
        (
            RetryBudget(3, 50, shallow_retries_used=10),
            False,
            V.ABORTED,
            "lost; hit shallow max retry count (10)",
        ),
        (
            RetryBudget(3, 50, shallow_retries_used=1, max_shallow_retry_count=1),
            False,
            V.ABORTED,
            "lost; hit shallow max retry count (1)",
        ),
        # a shallow retry does not use up RetryCount, nor a deep one ShallowRetryCount
        (
            RetryBudget(3, 2, retries_used=3, shallow_retries_used=0),
            False,
            V.SHALLOW_RETRY,
            "lost; resubmitted (shallow, 1 of 2)",
        ),
        (
            RetryBudget(3, 2, retries_used=0, shallow_retries_used=2),
            True,
            V.DEEP_RETRY,
            "lost; resubmitted (deep, 1 of 3)",
        ),
        # ShallowRetryCount = -1: no token, every resubmission is deep (counted on RetryCount)
        (RetryBudget(3, -1), False, V.DEEP_RETRY, "lost; resubmitted (deep, 1 of 3)"),
        (RetryBudget(3, -1, retries_used=3), False, V.ABORTED, "lost; hit job retry count (3)"),
        (RetryBudget(0, -1), False, V.ABORTED, "lost; hit job retry count (0)"),
    ],
)
def test_limits_caps_and_disabled_shallow_retries(
    budget: RetryBudget, payload_started: bool, verdict: Verdict, reason: str
) -> None:
    d = decide(AttemptEnd(E.LEASE_EXPIRED, payload_started, reason=LOST), budget)
    assert (d.verdict, d.reason) == (verdict, reason)
    if verdict is V.ABORTED:
        assert (d.retries_used, d.shallow_retries_used) == (
            budget.retries_used,
            budget.shallow_retries_used,
        )


@pytest.mark.parametrize(
    ("status", "shallow_retry_count", "verdict"),
    [
        (E.SETUP_FAILED, -1, V.DEEP_RETRY),
        (E.DRAINED, -1, V.DEEP_RETRY),
        (E.REFUSED, -1, V.REQUEUE),
        (E.REFUSED, 0, V.REQUEUE),
        (E.SETUP_FAILED, 0, V.ABORTED),
        (E.FAILED, 0, V.DONE_FAILED),
    ],
)
def test_statuses_against_shallow_settings(
    status: EndStatus, shallow_retry_count: int, verdict: Verdict
) -> None:
    assert decide(AttemptEnd(status), RetryBudget(3, shallow_retry_count)).verdict is verdict


def test_refused_never_counts_even_with_no_retries_left() -> None:
    budget = RetryBudget(0, 0, retries_used=5, shallow_retries_used=5)
    assert decide(AttemptEnd(E.REFUSED), budget) == Decision(
        V.REQUEUE, "the pilot refused the job; requeued", 5, 5
    )


@pytest.mark.parametrize(
    ("budget", "deep", "shallow"),
    [
        (RetryBudget(3, 3), 3, 3),
        (RetryBudget(30, 30), 10, 10),
        (RetryBudget(None, None), 0, 0),
        (RetryBudget(3, -1), 3, 0),
        (RetryBudget(-2, -7, max_retry_count=5, max_shallow_retry_count=5), 0, 0),
    ],
)
def test_effective_limits(budget: RetryBudget, deep: int, shallow: int) -> None:
    assert (budget.deep_limit, budget.shallow_limit) == (deep, shallow)


@pytest.mark.parametrize("verdict", list(Verdict))
def test_only_retries_requeue(verdict: Verdict) -> None:
    assert verdict.requeues is (verdict in (V.DEEP_RETRY, V.SHALLOW_RETRY, V.REQUEUE))


# --- the lease ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "periods", "max_s", "override_s", "lease"),
    [
        (30.0, 2.0, 60.0, None, 60.0),
        (10.0, 2.0, 60.0, None, 20.0),
        (1.0, 2.0, 60.0, None, 2.0),
        (45.0, 2.0, 60.0, None, 60.0),
        (30.0, 3.0, None, None, 90.0),
        (30.0, 2.0, 300.0, None, 60.0),
        (30.0, 2.0, 60.0, 120.0, 120.0),
    ],
)
def test_lease_timeout(
    interval: float, periods: float, max_s: float | None, override_s: float | None, lease: float
) -> None:
    assert lease_timeout(interval, periods=periods, max_s=max_s, override_s=override_s) == lease
    if (periods, max_s, override_s) == (2.0, 60.0, None):
        assert lease_timeout(interval) == lease


@pytest.mark.parametrize(
    ("interval", "kwargs"),
    [(60.0, {}), (90.0, {}), (30.0, {"override_s": 30.0}), (0.0, {}), (-1.0, {})],
)
def test_lease_must_outlast_a_heartbeat(interval: float, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        lease_timeout(interval, **kwargs)


def test_expired_attempts() -> None:
    now = 1000.0
    attempts = [
        # the pilot heartbeats and lists the attempt: alive
        LiveAttempt(
            "1", 1, "p1", handed_out_at=100.0, pilot_last_heartbeat=990.0, last_listed=990.0
        ),
        # the pilot went silent 61 s ago: expired
        LiveAttempt(
            "2",
            1,
            "p2",
            handed_out_at=100.0,
            pilot_last_heartbeat=939.0,
            last_listed=939.0,
            payload_started=True,
        ),
        # exactly one lease ago: not yet
        LiveAttempt(
            "3", 2, "p3", handed_out_at=100.0, pilot_last_heartbeat=940.0, last_listed=940.0
        ),
        # handed out 30 s ago to a pilot that has not heartbeat since: within the lease
        LiveAttempt("4", 1, "p4", handed_out_at=970.0, pilot_last_heartbeat=500.0),
        # handed out 70 s ago, never heard of since: expired
        LiveAttempt("5", 1, "p5", handed_out_at=930.0),
        # the pilot heartbeats but stopped listing the attempt 80 s ago: lost
        LiveAttempt(
            "6", 3, "p1", handed_out_at=100.0, pilot_last_heartbeat=990.0, last_listed=920.0
        ),
        # the pilot heartbeats but never listed the attempt handed out 90 s ago: lost
        LiveAttempt("7", 1, "p1", handed_out_at=910.0, pilot_last_heartbeat=990.0),
    ]
    assert [(a.job_id, a.attempt) for a in expired_attempts(now, attempts, 60.0)] == [
        ("2", 1),
        ("5", 1),
        ("6", 3),
        ("7", 1),
    ]
    assert expired_attempts(now, [], 60.0) == []


def test_an_expired_attempt_becomes_a_retry_of_the_right_kind() -> None:
    lost = LiveAttempt("9", 1, "p9", handed_out_at=0.0, payload_started=True)
    (expired,) = expired_attempts(100.0, [lost], 60.0)
    end = AttemptEnd(E.LEASE_EXPIRED, expired.payload_started)
    assert decide(end, BUDGET).verdict is V.DEEP_RETRY
