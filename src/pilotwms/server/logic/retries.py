"""What happens to a job when an attempt ends abnormally or its lease expires: pure decisions.

gLite's rule (WMS ``submit_request.cpp``, ``submission_utils.cpp``; research notes
``glite-jdl.md`` section 3.3). Before the job wrapper starts the user payload it takes a token;
a failure while the token is still there is a **shallow** resubmission, counted against
``ShallowRetryCount``, one after it a **deep** resubmission, counted against ``RetryCount``.
Here the agent's ``payload_started`` report is the token. The limits are
``max(0, min(job value, server cap))`` (``MaxRetryCount`` and ``MaxShallowRetryCount``, 10 by
default), the job's own value checked first, so the abort reasons are gLite's:
"hit job retry count (N)", "hit max retry count (N)", "hit job shallow retry count (N)" and
"hit shallow max retry count (N)". ``ShallowRetryCount = -1`` disables shallow resubmission: gLite
then creates no token and every resubmission is deep (``check_deep_count`` in the "shallow not
enabled" branch), so a failure before the payload counts against ``RetryCount``.

A payload that ran and exited non-zero is **not** resubmitted: in gLite the job wrapper
reports the user job's exit code and the job ends ``Done (Exit Code != 0)`` (LB ``done_code``
FAILED); deep resubmission is for the job wrapper's own failures after the payload started (a
lost node, an expired lease while running). So ``failed`` is DONE(failed) with the exit code,
and so are ``killed_walltime`` and ``killed_memory``: the job hit its own limits, and another
attempt would hit them again. ``drained`` (the pilot left, not the payload's fault) is shallow
whatever ``payload_started`` says, as the pilot protocol states; ``refused`` (the job never
started because it did not fit the pilot after all) is requeued without counting.

The lease: a pilot that stops heartbeating is declared dead after ``lease_timeout``
(by default two heartbeat periods, at most 60 s); :func:`expired_attempts` picks its attempts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

#: gLite's WMS caps (``MaxRetryCount``, ``MaxShallowRetryCount`` in ``Configuration.def``).
DEFAULT_MAX_RETRY_COUNT: Final = 10
DEFAULT_MAX_SHALLOW_RETRY_COUNT: Final = 10
#: The issue's lease rule: two heartbeat periods, at most 60 s.
DEFAULT_LEASE_PERIODS: Final = 2.0
DEFAULT_LEASE_MAX_S: Final = 60.0


class EndStatus(StrEnum):
    """How an attempt ended: the agent's ``finished`` statuses, plus the server's own
    ``lease_expired`` (the pilot stopped heartbeating, or never reported the attempt)."""

    DONE = "done"
    FAILED = "failed"
    SETUP_FAILED = "setup_failed"
    DRAINED = "drained"
    REFUSED = "refused"
    KILLED_WALLTIME = "killed_walltime"
    KILLED_MEMORY = "killed_memory"
    CANCELLED = "cancelled"
    LEASE_EXPIRED = "lease_expired"


class Verdict(StrEnum):
    """What to do with the job."""

    DEEP_RETRY = "deep_retry"  # back to WAITING, one more RetryCount used
    SHALLOW_RETRY = "shallow_retry"  # back to WAITING, one more ShallowRetryCount used
    REQUEUE = "requeue"  # back to WAITING, nothing counted
    DONE_OK = "done_ok"
    DONE_FAILED = "done_failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"

    @property
    def requeues(self) -> bool:
        return self in (Verdict.DEEP_RETRY, Verdict.SHALLOW_RETRY, Verdict.REQUEUE)


@dataclass(frozen=True)
class RetryBudget:
    """A job's retry limits and how much of them it used.

    ``retry_count`` and ``shallow_retry_count`` are the job's own values (JDL or defaults;
    ``None`` when absent, which gLite's WM reads as 0; ``shallow_retry_count = -1`` disables
    shallow resubmission). The caps are the server's. Already-capped values work too: then
    an abort always names the job's limit.
    """

    retry_count: int | None = 0
    shallow_retry_count: int | None = 0
    retries_used: int = 0
    shallow_retries_used: int = 0
    max_retry_count: int = DEFAULT_MAX_RETRY_COUNT
    max_shallow_retry_count: int = DEFAULT_MAX_SHALLOW_RETRY_COUNT

    @property
    def shallow_enabled(self) -> bool:
        return self.shallow_retry_count != -1

    @property
    def deep_limit(self) -> int:
        """``max(0, min(RetryCount, MaxRetryCount))``."""
        return max(0, min(self.retry_count or 0, self.max_retry_count))

    @property
    def shallow_limit(self) -> int:
        """``max(0, min(ShallowRetryCount, MaxShallowRetryCount))``; 0 when disabled."""
        if not self.shallow_enabled:
            return 0
        return max(0, min(self.shallow_retry_count or 0, self.max_shallow_retry_count))


@dataclass(frozen=True)
class AttemptEnd:
    """The end of one attempt, as reported (or as the server concluded for a lost lease)."""

    status: EndStatus
    payload_started: bool = False
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    """The verdict, the reason to record, and the job's retry counters afterwards."""

    verdict: Verdict
    reason: str
    retries_used: int
    shallow_retries_used: int
    exit_code: int | None = None


def _deep(budget: RetryBudget, why: str) -> Decision:
    """A deep resubmission, or ABORTED with gLite's reason when none is left."""
    used = budget.retries_used
    job_limit = max(0, budget.retry_count or 0)
    if used >= job_limit:
        reason = f"hit job retry count ({job_limit})"
    elif used >= budget.max_retry_count:
        reason = f"hit max retry count ({budget.max_retry_count})"
    else:
        return Decision(
            Verdict.DEEP_RETRY,
            f"{why}; resubmitted (deep, {used + 1} of {budget.deep_limit})",
            used + 1,
            budget.shallow_retries_used,
        )
    return Decision(Verdict.ABORTED, f"{why}; {reason}", used, budget.shallow_retries_used)


def _shallow(budget: RetryBudget, why: str) -> Decision:
    """A shallow resubmission (deep when shallow ones are disabled), or ABORTED."""
    if not budget.shallow_enabled:
        return _deep(budget, why)
    used = budget.shallow_retries_used
    job_limit = max(0, budget.shallow_retry_count or 0)
    max_limit = max(0, budget.max_shallow_retry_count)
    if used >= job_limit:
        reason = f"hit job shallow retry count ({job_limit})"
    elif used >= max_limit:
        reason = f"hit shallow max retry count ({max_limit})"
    else:
        return Decision(
            Verdict.SHALLOW_RETRY,
            f"{why}; resubmitted (shallow, {used + 1} of {budget.shallow_limit})",
            budget.retries_used,
            used + 1,
        )
    return Decision(Verdict.ABORTED, f"{why}; {reason}", budget.retries_used, used)


def _failure_text(end: AttemptEnd) -> str:
    if end.signal is not None:
        text = f"killed by signal {end.signal}"
    elif end.exit_code is not None:
        text = f"exit code {end.exit_code}"
    else:
        text = "the job failed"
    return f"{text}: {end.reason}" if end.reason else text


def decide(end: AttemptEnd, budget: RetryBudget) -> Decision:
    """What becomes of the job whose attempt ended as ``end`` (see the module docstring).

    | status | verdict |
    | --- | --- |
    | done | DONE_OK (exit code 0) |
    | failed | DONE_FAILED with the exit code (gLite: Done, Exit Code != 0) |
    | killed_walltime, killed_memory | DONE_FAILED: the job's own limit |
    | cancelled | CANCELLED |
    | setup_failed | shallow retry (the payload never started) |
    | drained | shallow retry, whatever ``payload_started`` says |
    | lease_expired | deep retry if the payload started, else shallow |
    | refused | REQUEUE, nothing counted |

    A shallow retry with shallow resubmission disabled (-1) is a deep one; a retry past the
    limits is ABORTED with gLite's reason.
    """
    keep = budget.retries_used, budget.shallow_retries_used
    status = end.status
    if status is EndStatus.DONE:
        code = 0 if end.exit_code is None else end.exit_code
        return Decision(Verdict.DONE_OK, end.reason, *keep, exit_code=code)
    if status is EndStatus.FAILED:
        return Decision(Verdict.DONE_FAILED, _failure_text(end), *keep, exit_code=end.exit_code)
    if status is EndStatus.KILLED_WALLTIME:
        why = end.reason or "the job exceeded its wall-clock time limit"
        return Decision(Verdict.DONE_FAILED, why, *keep, exit_code=end.exit_code)
    if status is EndStatus.KILLED_MEMORY:
        why = end.reason or "the job exceeded its memory limit"
        return Decision(Verdict.DONE_FAILED, why, *keep, exit_code=end.exit_code)
    if status is EndStatus.CANCELLED:
        return Decision(Verdict.CANCELLED, end.reason or "cancelled by the user", *keep)
    if status is EndStatus.REFUSED:
        why = end.reason or "the pilot refused the job"
        return Decision(Verdict.REQUEUE, f"{why}; requeued", *keep)
    if status is EndStatus.SETUP_FAILED:
        return _shallow(budget, end.reason or "the job setup failed")
    if status is EndStatus.DRAINED:
        return _shallow(budget, end.reason or "the pilot was drained")
    # LEASE_EXPIRED
    why = end.reason or "the pilot stopped sending heartbeats (lease expired)"
    if end.payload_started:
        return _deep(budget, why)
    return _shallow(budget, why)


def lease_timeout(
    heartbeat_interval_s: float,
    *,
    periods: float = DEFAULT_LEASE_PERIODS,
    max_s: float | None = DEFAULT_LEASE_MAX_S,
    override_s: float | None = None,
) -> float:
    """Seconds without a heartbeat after which a pilot is dead:
    ``min(periods * heartbeat_interval_s, max_s)``, or ``override_s`` when configured.

    Raises ``ValueError`` when the lease would not outlast one heartbeat interval: every live
    pilot would then be declared dead between two heartbeats (raise ``max_s`` or shorten the
    interval).
    """
    if heartbeat_interval_s <= 0:
        raise ValueError(f"heartbeat interval must be positive, not {heartbeat_interval_s}")
    if override_s is not None:
        lease = override_s
    else:
        lease = periods * heartbeat_interval_s
        if max_s is not None:
            lease = min(lease, max_s)
    if lease <= heartbeat_interval_s:
        raise ValueError(
            f"a lease of {lease:g} s does not outlast the heartbeat interval of "
            f"{heartbeat_interval_s:g} s: raise the lease limit or heartbeat more often"
        )
    return lease


@dataclass(frozen=True)
class LiveAttempt:
    """An attempt the server handed out and has no final report for.

    ``pilot_last_heartbeat``: when its pilot last heartbeat (``None``: not since registering);
    ``last_listed``: the last heartbeat that listed this attempt (``None``: none yet).
    """

    job_id: str
    attempt: int
    pilot_id: str
    handed_out_at: float
    pilot_last_heartbeat: float | None = None
    last_listed: float | None = None
    payload_started: bool = False


def expired_attempts(
    now: float, attempts: Iterable[LiveAttempt], lease_s: float
) -> list[LiveAttempt]:
    """The attempts to requeue at ``now``, in the order given.

    An attempt expires when its pilot has been silent for longer than the lease (counting from
    the hand-out if the pilot has not heartbeat since), or when its pilot heartbeats but has
    not listed it for longer than the lease: the work reply never reached the pilot, or the
    attempt finished and its report is lost (the protocol gives the report a lease period).
    Feed each to :func:`decide` as ``AttemptEnd(EndStatus.LEASE_EXPIRED, payload_started)``.
    """
    out: list[LiveAttempt] = []
    for a in attempts:
        heard = a.handed_out_at
        if a.pilot_last_heartbeat is not None and a.pilot_last_heartbeat > heard:
            heard = a.pilot_last_heartbeat
        if now - heard > lease_s:
            out.append(a)
            continue
        seen = a.handed_out_at
        if a.last_listed is not None and a.last_listed > seen:
            seen = a.last_listed
        if now - seen > lease_s:
            out.append(a)
    return out


__all__ = [
    "DEFAULT_LEASE_MAX_S",
    "DEFAULT_LEASE_PERIODS",
    "DEFAULT_MAX_RETRY_COUNT",
    "DEFAULT_MAX_SHALLOW_RETRY_COUNT",
    "AttemptEnd",
    "Decision",
    "EndStatus",
    "LiveAttempt",
    "RetryBudget",
    "Verdict",
    "decide",
    "expired_attempts",
    "lease_timeout",
]
