"""Pilot lifetime decisions as tables: events in, decisions out, the clock passed in."""

from __future__ import annotations

from typing import Any

import pytest

from pilotwms.agent.lifecycle import DRAINING, Lifecycle


def make(**kw: Any) -> Lifecycle:
    options: dict[str, Any] = {"wait_term": 600.0, "max_runtime": 0.0, "batch_time_left": None}
    options.update(kw)
    return Lifecycle(1000.0, **options)


# (options, now, running, take_work, exit, kill, reason fragment)
IDLE_AND_TIME = [
    ({}, 1000.0, 0, True, False, False, ""),
    ({}, 1599.0, 0, True, False, False, ""),
    ({}, 1600.0, 0, False, True, False, "idle for 600 s"),
    ({}, 5000.0, 1, True, False, False, ""),  # a running job: never idle
    ({"wait_term": 0}, 1e9, 0, True, False, False, ""),  # keep-warm pilot
    ({"max_runtime": 3600}, 1500.0, 0, True, False, False, ""),
    ({"max_runtime": 3600, "wait_term": 0}, 4550.0, 1, False, False, False, "lifetime left"),
    ({"max_runtime": 3600, "wait_term": 0}, 4550.0, 0, False, True, False, "lifetime left"),
    ({"max_runtime": 3600, "wait_term": 0}, 9000.0, 1, False, False, False, ""),  # soft: no kill
    ({"batch_time_left": 3600, "wait_term": 0}, 4500.0, 1, True, False, False, ""),
    ({"batch_time_left": 3600, "wait_term": 0}, 4545.0, 1, False, False, False, "lifetime left"),
    ({"batch_time_left": 3600, "wait_term": 0}, 4571.0, 1, False, False, True, "walltime"),
    ({"batch_time_left": 3600, "wait_term": 0}, 4571.0, 0, False, True, False, "walltime"),
]


@pytest.mark.parametrize(
    ("options", "now", "running", "take", "exit_", "kill", "reason"), IDLE_AND_TIME
)
def test_decisions(
    options: dict[str, Any],
    now: float,
    running: int,
    take: bool,
    exit_: bool,
    kill: bool,
    reason: str,
) -> None:
    life = make(**options)
    if running:
        life.on_job_started(1000.0)
    decision = life.decide(now, running)
    assert (decision.take_work, decision.exit, decision.kill_running) == (take, exit_, kill)
    assert reason in decision.reason


def test_idle_clock_restarts_when_the_last_job_ends() -> None:
    life = make(wait_term=100)
    life.on_job_started(1050.0)
    life.on_job_finished(1200.0, running=0)
    assert not life.decide(1299.0, 0).exit
    assert life.decide(1300.0, 0).exit
    life.on_job_started(1300.0)
    life.on_job_finished(1310.0, running=1)  # another job still runs
    assert life.idle_since is None


def test_time_left_is_the_nearer_end() -> None:
    life = make(max_runtime=3600, batch_time_left=1800)
    assert life.time_left(1100.0) == 1700.0
    assert life.hard_time_left(1100.0) == 1700.0
    assert make().time_left(5000.0) is None


@pytest.mark.parametrize(
    ("max_wall", "now", "fits"),
    [(None, 1000.0, True), (3000, 1000.0, True), (3700, 1000.0, False), (None, 4590.0, False)],
)
def test_job_fits_time_left(max_wall: float | None, now: float, fits: bool) -> None:
    life = make(max_runtime=3600)
    assert life.job_fits(max_wall, now) is fits
    assert make().job_fits(max_wall, now) is True


def test_drain_waits_for_jobs_then_exits() -> None:
    life = make()
    life.on_job_started(1000.0)
    life.on_drain(1010.0, "new agent version")
    assert life.phase == DRAINING
    decision = life.decide(99999.0, 1)
    assert (decision.take_work, decision.exit, decision.kill_running) == (False, False, False)
    decision = life.decide(99999.0, 0)
    assert decision.exit and decision.reason == "new agent version"


def test_drain_with_grace_kills_after_the_grace() -> None:
    life = make()
    life.on_drain(1000.0, "SIGTERM", grace=30)
    assert not life.decide(1029.0, 2).kill_running
    decision = life.decide(1030.0, 2)
    assert decision.kill_running and "grace period over" in decision.reason


def test_a_second_drain_only_shortens_the_grace() -> None:
    life = make()
    life.on_drain(1000.0, "SIGTERM", grace=30)
    life.on_drain(1001.0, "server drain")  # no grace: does not lengthen
    assert life.drain_deadline == 1030.0
    life.on_drain(1002.0, "second SIGTERM", grace=0)
    assert life.decide(1002.0, 1).kill_running
