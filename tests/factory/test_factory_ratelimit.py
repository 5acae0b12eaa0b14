"""Tables for the per-queue rate limiter: the per-minute cap, exponential back-off after failed
submissions or pilots that die at start, the pause after N in a row, and resume."""

from __future__ import annotations

import pytest

from pilotwms.factory.ratelimit import QueueRateLimiter, RateLimitRules

T0 = 1_000.0


def limiter(**rules: object) -> QueueRateLimiter:
    return QueueRateLimiter("slurm-short", RateLimitRules(**rules))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("submitted", "at", "allowed"),
    [
        ([], 0, 5),
        ([(0, 2)], 1, 3),
        ([(0, 5)], 1, 0),
        ([(0, 5)], 59.9, 0),
        ([(0, 5)], 60.0, 5),  # the window slides: a minute later all five are forgotten
        ([(0, 3), (30, 2)], 61, 3),
        ([(0, 3), (30, 2)], 91, 5),
    ],
)
def test_per_minute_cap(submitted: list[tuple[float, int]], at: float, allowed: int) -> None:
    rl = limiter(max_per_minute=5)
    for when, count in submitted:
        rl.record_submitted(T0 + when, count)
    gate = rl.gate(T0 + at)
    assert gate.allowed == allowed
    assert not gate.paused
    if allowed == 0:
        assert gate.reason is not None and "max_per_minute=5" in gate.reason


@pytest.mark.parametrize(
    ("failures", "wait", "open_at"),
    [
        (1, 59, False),
        (1, 60, True),
        (2, 899, False),
        (2, 900, True),
        (3, 1800, True),
        (4, 3599, False),
        (4, 3600, True),
        (6, 3600, True),  # the last step repeats
    ],
)
def test_backoff_steps_after_failed_submissions(failures: int, wait: float, open_at: bool) -> None:
    rl = limiter(pause_after_submit_failures=100)
    for i in range(failures):
        rl.record_submit_failure(T0, f"sbatch: error {i}")
    gate = rl.gate(T0 + wait)
    assert (gate.allowed > 0) is open_at
    if not open_at:
        assert gate.reason is not None
        assert gate.reason.startswith("backing off for ")
        plural = "s" if failures > 1 else ""
        assert f"after {failures} consecutive failure{plural} " in gate.reason
        assert f"sbatch: error {failures - 1}" in gate.reason


def test_backoff_step_k_follows_the_kth_failure() -> None:
    """``backoff_s[0]`` applies with no failure, ``backoff_s[1]`` after the first, and so on."""
    rl = limiter(backoff_s=(0.0, 0.0, 10.0))
    rl.record_submit_failure(T0, "x")
    assert rl.gate(T0).allowed > 0
    rl.record_submit_failure(T0, "x")
    assert rl.gate(T0).allowed == 0
    assert rl.gate(T0 + 10).allowed > 0


def test_success_resets_the_submit_streak() -> None:
    rl = limiter(pause_after_submit_failures=3)
    rl.record_submit_failure(T0, "a")
    rl.record_submit_failure(T0 + 60, "b")
    rl.record_submitted(T0 + 1000, 1)
    assert rl.submit_failures == 0
    assert rl.gate(T0 + 1000).allowed > 0
    rl.record_submit_failure(T0 + 1001, "c")
    rl.record_submit_failure(T0 + 1100, "d")
    assert not rl.paused


@pytest.mark.parametrize(
    ("kind", "count", "paused"),
    [
        ("submit", 9, False),
        ("submit", 10, True),
        ("start", 2, False),
        ("start", 3, True),
    ],
)
def test_pause_after_consecutive_failures(kind: str, count: int, paused: bool) -> None:
    rl = limiter()  # HyperQueue's defaults: 10 failed submissions or 3 failed starts
    for i in range(count):
        if kind == "submit":
            rl.record_submit_failure(T0 + i, "sbatch: error: invalid partition specified: gpu")
        else:
            rl.record_start_failure(T0 + i, f"p{i}", "exit code 127 before registering")
    gate = rl.gate(T0 + 10 * 3600)
    assert gate.paused is paused
    assert (gate.allowed == 0) is paused
    if paused:
        assert gate.reason is not None
        assert "pilotwms factory resume slurm-short" in gate.reason
        if kind == "submit":
            assert "invalid partition specified: gpu" in gate.reason
        else:
            assert f"pilot p{count - 1}: exit code 127" in gate.reason
            assert f"pilotwms pilots log p{count - 1}" in gate.reason


def test_a_pilot_that_starts_resets_the_start_streak() -> None:
    rl = limiter()
    rl.record_start_failure(T0, "p1", "died")
    rl.record_start_failure(T0, "p2", "died")
    rl.record_pilot_started(T0 + 1)
    rl.record_start_failure(T0 + 2, "p3", "died")
    assert not rl.paused
    assert rl.start_failures == 1


def test_start_failures_also_back_off() -> None:
    rl = limiter()
    rl.record_start_failure(T0, "p1", "died")
    assert rl.gate(T0 + 30).allowed == 0
    assert rl.gate(T0 + 60).allowed > 0


def test_resume_clears_the_pause() -> None:
    rl = limiter(pause_after_start_failures=1)
    rl.record_start_failure(T0, "p1", "died")
    assert rl.gate(T0 + 99999).paused
    rl.resume(T0 + 5)
    gate = rl.gate(T0 + 5)
    assert not gate.paused and gate.allowed > 0 and gate.reason is None
    assert rl.last_failure is None


def test_pause_is_permanent_until_resumed() -> None:
    rl = limiter(pause_after_submit_failures=1)
    rl.record_submit_failure(T0, "boom")
    rl.record_submitted(T0 + 1, 0)  # nothing submitted: no effect
    assert rl.gate(T0 + 10**7).paused


@pytest.mark.parametrize(
    "rules",
    [
        {"max_per_minute": 0},
        {"backoff_s": ()},
        {"backoff_s": (0.0, -1.0)},
        {"pause_after_submit_failures": 0},
        {"pause_after_start_failures": 0},
    ],
)
def test_rules_refuse_nonsense(rules: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RateLimitRules(**rules)  # type: ignore[arg-type]
