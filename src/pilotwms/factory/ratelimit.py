"""Per-queue submission rate limiting with back-off, in the manner of HyperQueue's autoalloc.

A queue that cannot submit (``sbatch`` fails: wrong account, partition gone) or whose pilots die
before they ever register (broken Python on the nodes, firewall to the server) must not be hammered
every cycle: each consecutive failure pushes the next submission further away (0 s, 1 min, 15 min,
30 min, 1 h by default) and after too many in a row the queue is paused until an operator resumes
it. The reason is kept in words so that ``pilotwms factory status`` can say *why* a queue is quiet.

``QueueRateLimiter`` is a plain state object: every method takes the current time, it never reads
a clock, so tests replay any history in microseconds and the daemon decides what "now" is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BACKOFF_S", "QueueRateLimiter", "RateGate", "RateLimitRules"]

#: HyperQueue autoalloc's delays between submissions after 0, 1, 2, 3, 4+ consecutive failures.
DEFAULT_BACKOFF_S: tuple[float, ...] = (0.0, 60.0, 900.0, 1800.0, 3600.0)

_WINDOW_S = 60.0


@dataclass(frozen=True)
class RateLimitRules:
    """How fast one queue may submit and how it reacts to failures.

    ``max_per_minute`` caps pilots submitted in any sliding 60 s window (a burst of demand must not
    flood a site's scheduler). ``backoff_s[k]`` is the delay after ``k`` consecutive failures (the
    last step repeats). The queue is paused after ``pause_after_submit_failures`` failed
    submissions in a row or ``pause_after_start_failures`` pilots in a row that died at start.
    """

    max_per_minute: int = 60
    backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S
    pause_after_submit_failures: int = 10
    pause_after_start_failures: int = 3

    def __post_init__(self) -> None:
        if self.max_per_minute < 1:
            raise ValueError("max_per_minute must be at least 1")
        if not self.backoff_s or any(step < 0 for step in self.backoff_s):
            raise ValueError("backoff_s needs at least one step, none negative")
        if self.pause_after_submit_failures < 1 or self.pause_after_start_failures < 1:
            raise ValueError("pause thresholds must be at least 1")

    def delay_after(self, failures: int) -> float:
        """The back-off delay after ``failures`` consecutive failures."""
        return self.backoff_s[min(failures, len(self.backoff_s) - 1)]


@dataclass(frozen=True)
class RateGate:
    """What the limiter allows right now: the sizing policy's view of it.

    ``allowed`` is how many pilots may be submitted this cycle; ``paused`` means the queue is
    stopped until resumed (the policy then sends its demand to other queues); ``reason`` says in
    words why ``allowed`` is smaller than asked, or is ``None`` when nothing holds the queue back.
    """

    allowed: int
    paused: bool = False
    reason: str | None = None

    @classmethod
    def open(cls, allowed: int = 1_000_000) -> RateGate:
        """A gate that holds nothing back (queues without history, tests)."""
        return cls(allowed=allowed)


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}min"
    return f"{value / 3600:.1f}h"


@dataclass
class QueueRateLimiter:
    """The rate-limit and back-off state of one factory queue."""

    queue: str
    rules: RateLimitRules = field(default_factory=RateLimitRules)
    submit_failures: int = 0
    start_failures: int = 0
    next_allowed_at: float = 0.0
    paused_reason: str | None = None
    last_failure: str | None = None
    _recent: deque[float] = field(default_factory=deque, repr=False)

    # -- what the policy sees -------------------------------------------------------------

    def gate(self, now: float) -> RateGate:
        """How many pilots this queue may submit at ``now``, and why not more."""
        if self.paused_reason is not None:
            return RateGate(allowed=0, paused=True, reason=self.paused_reason)
        if now < self.next_allowed_at:
            failures = max(self.submit_failures, self.start_failures)
            return RateGate(
                allowed=0,
                reason=(
                    f"backing off for {_seconds(self.next_allowed_at - now)} after {failures} "
                    f"consecutive failure{'s' if failures != 1 else ''} (last: {self.last_failure})"
                ),
            )
        self._forget_before(now - _WINDOW_S)
        allowed = self.rules.max_per_minute - len(self._recent)
        if allowed <= 0:
            wait = self._recent[0] + _WINDOW_S - now
            return RateGate(
                allowed=0,
                reason=(
                    f"rate limit: {len(self._recent)} pilots submitted in the last minute "
                    f"(max_per_minute={self.rules.max_per_minute}); next in {_seconds(wait)}"
                ),
            )
        return RateGate(allowed=allowed)

    @property
    def paused(self) -> bool:
        return self.paused_reason is not None

    # -- what the runner reports ----------------------------------------------------------

    def record_submitted(self, now: float, count: int) -> None:
        """``count`` pilots were accepted by the batch system: the submit streak is broken."""
        if count <= 0:
            return
        self._recent.extend([now] * count)
        self.submit_failures = 0
        self._reschedule(now)

    def record_submit_failure(self, now: float, message: str) -> None:
        """The submit command failed; back off, and pause after too many in a row."""
        self.submit_failures += 1
        self.last_failure = f"submission failed: {message}"
        limit = self.rules.pause_after_submit_failures
        if self.submit_failures >= limit:
            self.paused_reason = (
                f"paused after {self.submit_failures} failed submissions in a row "
                f"(last: {message}); fix the queue's backend options, then run "
                f"'pilotwms factory resume {self.queue}'"
            )
        self._reschedule(now)

    def record_pilot_started(self, now: float) -> None:
        """A pilot of this queue registered with the server: the queue's pilots can start."""
        self.start_failures = 0
        self._reschedule(now)

    def record_start_failure(self, now: float, pilot: str, reason: str) -> None:
        """A pilot ended without ever registering (it died at start); back off, maybe pause."""
        self.start_failures += 1
        self.last_failure = f"pilot {pilot} died at start: {reason}"
        limit = self.rules.pause_after_start_failures
        if self.start_failures >= limit:
            self.paused_reason = (
                f"paused after {self.start_failures} pilots in a row died at start "
                f"(last: pilot {pilot}: {reason}); read its log with 'pilotwms pilots log "
                f"{pilot}', fix the cause, then run 'pilotwms factory resume {self.queue}'"
            )
        self._reschedule(now)

    def resume(self, now: float) -> None:
        """An operator fixed the cause: forget the failure streaks and submit again."""
        self.paused_reason = None
        self.submit_failures = 0
        self.start_failures = 0
        self.last_failure = None
        self.next_allowed_at = now

    # -- internals ------------------------------------------------------------------------

    def _reschedule(self, now: float) -> None:
        failures = max(self.submit_failures, self.start_failures)
        self.next_allowed_at = now + self.rules.delay_after(failures)

    def _forget_before(self, cutoff: float) -> None:
        while self._recent and self._recent[0] <= cutoff:
            self._recent.popleft()
