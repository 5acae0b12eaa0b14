"""When a pilot takes work, drains and exits: pure decisions from events and a clock value.

The runner feeds events (a job started or finished, a drain command, SIGTERM) and asks
:meth:`Lifecycle.decide` with the current time; nothing here sleeps or reads a clock, so the rules
are tested as tables. The rules, after lgipilot's ``WaitTerm``/``MaxRuntime`` and DIRAC's filling
mode:

* ``wait_term``: exit after that many seconds with no job running (0 or less: never idle out;
  the factory's keep-warm pilots use that).
* ``max_runtime`` is a soft limit: past it (or with less than ``min_time_left`` before it) the
  pilot takes no new work but lets running jobs finish, as lgipilot never killed a running job.
* The batch system's walltime is a hard limit: ``end_margin`` seconds before it, running jobs are
  killed and reported ``drained`` so that the server retries them as shallow retries instead of
  losing them to the batch system's SIGKILL.
* A drain (server command or SIGTERM) stops work requests at once; running jobs get ``grace``
  seconds (None: until they finish or the hard limit comes), then are killed and reported
  ``drained``. The pilot exits when nothing runs any more.
* Work is requested with the time left, so the server only hands out jobs whose
  ``max_wall_time_s`` fits; :meth:`Lifecycle.job_fits` re-checks each job that arrives.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

RUNNING = "running"
DRAINING = "draining"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the runner should do now."""

    take_work: bool
    """Ask the server for work (if slots are free)."""
    time_left_s: Optional[float]
    """Seconds of pilot lifetime left to advertise (None: unbounded)."""
    kill_running: bool = False
    """Kill the running jobs now and report them ``drained``."""
    exit: bool = False
    """Leave the main loop and deregister."""
    reason: str = ""
    """Why the pilot stops taking work, kills or exits (empty while all is normal)."""


class Lifecycle:
    """The pilot's lifetime state; every method takes the current time in seconds."""

    def __init__(
        self,
        started_at: float,
        *,
        wait_term: float = 600.0,
        max_runtime: float = 0.0,
        batch_time_left: Optional[float] = None,
        min_time_left: float = 60.0,
        end_margin: float = 30.0,
    ):
        self.started_at = started_at
        self.wait_term = wait_term
        self.soft_end = started_at + max_runtime if max_runtime > 0 else None
        self.hard_end = started_at + batch_time_left if batch_time_left is not None else None
        self.min_time_left = min_time_left
        self.end_margin = end_margin
        self.phase = RUNNING
        self.drain_reason = ""
        self.drain_deadline: Optional[float] = None
        self.idle_since: Optional[float] = started_at

    def time_left(self, now: float) -> Optional[float]:
        """Seconds until the nearer of the soft and hard ends (None: no limit known)."""
        ends = [end for end in (self.soft_end, self.hard_end) if end is not None]
        if not ends:
            return None
        return min(ends) - now

    def hard_time_left(self, now: float) -> Optional[float]:
        """Seconds until the batch system ends the pilot (None: not known)."""
        return None if self.hard_end is None else self.hard_end - now

    def on_job_started(self, now: float) -> None:
        """A job took a slot: the pilot is no longer idle."""
        self.idle_since = None

    def on_job_finished(self, now: float, running: int) -> None:
        """A job left its slot; ``running`` is how many still run."""
        if running == 0:
            self.idle_since = now

    def on_drain(self, now: float, reason: str, grace: Optional[float] = None) -> None:
        """Stop taking work; running jobs get ``grace`` seconds (None: until they end).

        A later drain can only shorten the grace: a second SIGTERM with grace 0 kills at once.
        """
        deadline = None if grace is None else now + max(0.0, grace)
        if self.phase != DRAINING:
            self.phase = DRAINING
            self.drain_reason = reason
            self.drain_deadline = deadline
        elif deadline is not None and (
            self.drain_deadline is None or deadline < self.drain_deadline
        ):
            self.drain_deadline = deadline
            self.drain_reason = reason

    def job_fits(self, max_wall_time_s: Optional[float], now: float) -> bool:
        """Whether a job with this wall-time limit can end before the pilot must stop."""
        left = self.time_left(now)
        if left is None or max_wall_time_s is None:
            return left is None or left > self.min_time_left
        return max_wall_time_s <= left

    def decide(self, now: float, running: int) -> Decision:
        """The decision for now, given how many jobs run."""
        left = self.time_left(now)
        hard_left = self.hard_time_left(now)

        if hard_left is not None and hard_left <= self.end_margin:
            if running:
                return Decision(False, left, kill_running=True, reason="batch walltime ends")
            return Decision(False, left, exit=True, reason="batch walltime ends")

        if self.phase == DRAINING:
            if not running:
                return Decision(False, left, exit=True, reason=self.drain_reason)
            if self.drain_deadline is not None and now >= self.drain_deadline:
                return Decision(
                    False,
                    left,
                    kill_running=True,
                    reason=f"{self.drain_reason}: grace period over",
                )
            return Decision(False, left, reason=self.drain_reason)

        if left is not None and left < self.min_time_left:
            reason = f"{max(0, int(left))} s of lifetime left, below {int(self.min_time_left)} s"
            return Decision(False, left, exit=not running, reason=reason)

        if (
            not running
            and self.wait_term > 0
            and self.idle_since is not None
            and now - self.idle_since >= self.wait_term
        ):
            return Decision(
                False, left, exit=True, reason=f"idle for {int(now - self.idle_since)} s"
            )
        return Decision(True, left)
