"""The thin runner: register, then loop (work, heartbeats, commands, reports) until told to exit.

All decisions come from the pure parts (``slots``, ``lifecycle``, ``jobspec``); this module only
does the I/O around them. The main thread never blocks on the server: the long-poll work request
and the report batches run in threads of their own (taken from the pool of reused threads the
jobs run in, ``executor.Threads``), and every other server call (the heartbeat) is one try
whose failure schedules the next try with back-off. So a pilot whose server is
away keeps its jobs running and their limits enforced, keeps their reports in the spool, and
delivers them when the server returns.

Short jobs are where the round trips show, so the runner does two things for them:

* **prefetch**: while the recent jobs were short, a work request also asks for a queue of
  jobs beyond the free slots (the ``prefetch`` field); they wait here, in arrival order, and
  start the moment a slot frees, without a round trip. A queued job is handed out as far as
  the server knows: heartbeats list it (so its lease holds), a drain refuses it at once, and a
  job that no longer fits when its turn comes is refused, as one that arrives unfit is.
* **coalesced reports**: while jobs are queued, reports go out once per ``_COALESCE_S`` window
  (or as soon as ``_FLUSH_AT`` are pending), so a pilot streaming short jobs sends one batch
  per window rather than one per job; otherwise at once, so the start of a single job is not
  delayed. ``finished`` reports are on disk (the spool) from the start. Batches are sent from a
  thread of their own, one at a time, like the long poll, so the slots never wait for the
  server.
* **jobs follow jobs in their thread**: a job's thread, once its job has ended, does the
  bookkeeping itself (the slot released, the lifecycle told) and runs the next queued job that
  fits, rather than handing over to the main loop, which would hand over to a pool thread:
  each hand-over is a wake-up and a fight for the interpreter lock, several per job. The main
  loop is woken only when it has something to do (the queue needs refilling, no job is left,
  a report should go out at once) and otherwise every coalescing window while jobs stream.
  What the job threads and the main loop share (running and queued jobs, the slot book, the
  lifecycle) is guarded by one lock, never held across a server call or a wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import shutil
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Set

from . import AGENT_VERSION
from .executor import CANCELLED, REFUSED, SETUP_FAILED, ExecutorContext, JobRunner
from .glue import dynamic_attributes, slot_ad
from .jobspec import JobSpec, JobSpecError, parse_job_spec
from .lifecycle import DRAINING, Lifecycle
from .protocol import PilotClient
from .settings import AgentSettings
from .slot import SlotFacts
from .slots import SlotBook
from .spool import Spool, new_report_id
from .staging import BlobCache
from .transport import Backoff, ServerRejected, ServerUnreachable, StaleAttempt, ssl_context

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_REJECTED = 2

_TICK = 0.5
_FINAL_FLUSH_S = 30.0
_COALESCE_S = 0.1
"""Shortest time between two report batches while reports keep coming."""
_FLUSH_AT = 100
"""Pending reports that are sent without waiting for the coalescing window to end."""
_SHORT_JOB_S = 2.0
"""Jobs shorter than this (on average, recently) are worth queueing ahead (prefetch)."""
_QUEUED_WORK_S = 1.0
"""Automatic prefetch: about this many seconds of work queued per job slot..."""
_MAX_QUEUED_PER_SLOT = 128
"""...and at most this many jobs per slot."""


class WorkDirBusy(RuntimeError):
    """Another agent is using the work directory (its spool and cache must not be shared)."""


def lock_work_dir(root: Path) -> IO[bytes]:
    """Hold an exclusive lock on ``root`` for the life of the returned handle."""
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / "agent.lock", "ab")  # noqa: SIM115 - held until the pilot ends
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise WorkDirBusy(f"{root} is in use by another pilot agent") from None
    return handle


class JobQueue:
    """Jobs handed to this pilot that wait for a slot, oldest first; a key lookup is O(1), as
    every job spec that arrives is checked against the whole queue."""

    def __init__(self) -> None:
        self._order: Deque[JobSpec] = deque()
        self._keys: Set[str] = set()

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def append(self, spec: JobSpec) -> None:
        self._order.append(spec)
        self._keys.add(spec.key)

    def first(self) -> JobSpec:
        return self._order[0]

    def popleft(self) -> JobSpec:
        spec = self._order.popleft()
        self._keys.discard(spec.key)
        return spec

    def remove(self, spec: JobSpec) -> None:
        self._order.remove(spec)
        self._keys.discard(spec.key)


class Pilot:
    """One pilot's run. ``clock`` is monotonic seconds, ``wall`` epoch seconds for reports."""

    def __init__(
        self,
        settings: AgentSettings,
        client: PilotClient,
        facts: SlotFacts,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        base_env: Optional[Mapping[str, str]] = None,
        backoff: Optional[Backoff] = None,
    ):
        self.settings = settings
        self.client = client
        self.facts = facts
        self.clock = clock
        self.wall = wall
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        root = settings.work_path
        self._lock = lock_work_dir(root)
        self.spool = Spool(root / "spool")
        self.cache = BlobCache(root / "cache", client)
        self.slots = SlotBook(facts.cores, facts.memory_mb, settings.max_jobs)
        self.lifecycle = Lifecycle(
            clock(),
            wait_term=settings.wait_term,
            max_runtime=settings.max_runtime,
            batch_time_left=facts.batch_time_left_s,
            min_time_left=settings.min_time_left,
            end_margin=settings.cancel_grace + 20.0,
        )
        self.context = ExecutorContext(
            jobs_root=root / "jobs",
            cache=self.cache,
            sink=client,
            base_env=dict(os.environ if base_env is None else base_env),
            cancel_grace=settings.cancel_grace,
            url_context=ssl_context(settings.ca_file or None, settings.insecure),
        )
        self.context.jobs_root.mkdir(parents=True, exist_ok=True)
        assert self.context.threads is not None
        self._threads = self.context.threads
        # Shared with the job threads, under _book: runners, queued, slots, lifecycle,
        # _recent_wall_s, _peek_sizes, _closing.
        self._book = threading.RLock()
        self.runners: Dict[str, JobRunner] = {}
        self.queued = JobQueue()
        self._closing = False
        # Progress reports held while jobs stream (see _on_event), by job key.
        self._held: Dict[str, List["tuple[JobSpec, str, float]"]] = {}
        self._recent_wall_s: Optional[float] = None  # moving average of finished jobs
        self._last_flush = -1e18
        self.heartbeat_s = 30.0
        self.poll_wait_s = 20.0
        self._wake = threading.Event()
        self._polled: "queue.Queue[Any]" = queue.Queue()
        self._poll_outstanding = False
        self._flushed: "queue.Queue[Any]" = queue.Queue()
        self._flush_outstanding = False
        self._signals = 0
        self._failures = 0
        self._next_try = 0.0
        self._next_heartbeat = 0.0
        self._peek_sizes: Dict[str, int] = {}
        self.exit_reason = ""

    # -- events from job threads and signal handlers -------------------------------------------

    def _report(
        self, job_id: str, attempt: int, kind: str, *, wake: bool = True, **fields: Any
    ) -> None:
        report = {
            "report_id": new_report_id(),
            "job_id": job_id,
            "attempt": attempt,
            "type": kind,
            "time": self.wall(),
        }
        report.update(fields)
        self.spool.add(report)
        if wake:
            self._wake.set()

    def _on_event(self, kind: str, runner: JobRunner) -> None:
        spec = runner.spec
        if kind == "finished" and runner.result is not None:
            fields = runner.result.report()
            for name in ("type", "job_id", "attempt"):
                fields.pop(name)
            fields["stdout_tail"] = runner.stdout_tail(2048) if spec.perusal else ""
            with self._book:
                self._held.pop(spec.key, None)  # implied by the end (the protocol's rule)
            # While jobs stream, the main loop wakes each coalescing window anyway, and the
            # job's thread frees the slot itself (_on_done); otherwise the report goes at once.
            self._report(spec.job_id, spec.attempt, "finished", wake=not self.queued, **fields)
        elif kind in ("started", "payload_started"):
            with self._book:
                # Short jobs streaming through: the progress report is held until the next
                # batch goes out (_release_held), by which time the job has usually ended
                # and its end report implies it; so most short jobs never make one. A job
                # with a report held holds the next too, so that they go out in order.
                if self.queued or spec.key in self._held:
                    self._held.setdefault(spec.key, []).append((spec, kind, self.wall()))
                    return
            self._report(spec.job_id, spec.attempt, kind)

    def _release_held(self) -> None:
        """Put the held progress reports of jobs still running into the spool (main loop,
        before a batch goes out), with the time of the event they report. Under ``_book``, so
        a job's end, which drops its held reports under it too, always comes after them."""
        with self._book:
            held, self._held = self._held, {}
            for events in held.values():
                for spec, kind, when in events:
                    self._report(spec.job_id, spec.attempt, kind, wake=False, time=when)

    def _on_done(self, runner: JobRunner) -> Optional[JobRunner]:
        """A job's thread is done with its job (``JobRunner.on_done``): free its slot and hand
        back the next queued job that fits, to run in that thread."""
        now = self.clock()
        with self._book:
            self._retire(runner, now)
            successor = self._start_queued(now, inline=True)
            wake = not self.runners or self._wants_work()
        if wake:
            self._wake.set()
        return successor

    def handle_signal(self, signum: int, frame: Any = None) -> None:
        """SIGTERM/SIGINT: the first drains with ``sigterm_grace``, the next kills at once."""
        self._signals += 1
        self._wake.set()

    # -- the main loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Run until the lifecycle says exit; returns the process exit code."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle_signal)
            signal.signal(signal.SIGINT, self.handle_signal)
        code = self._register_until_done()
        if code is not None:
            return code
        handled_signals = 0
        while True:
            now = self.clock()
            if self._signals > handled_signals:
                grace = self.settings.sigterm_grace if handled_signals == 0 else 0.0
                handled_signals = self._signals
                with self._book:
                    self.lifecycle.on_drain(now, "SIGTERM from the batch system", grace)
            self._take_polled(now)
            self._take_flushed(now)
            with self._book:
                if self.queued and (self.lifecycle.phase == DRAINING or self._signals):
                    self._refuse_queued(f"pilot is draining ({self.lifecycle.drain_reason})")
                decision = self.lifecycle.decide(now, len(self.runners) + len(self.queued))
                if decision.kill_running:
                    for runner in self.runners.values():
                        runner.drain(decision.reason)
                draining = self.lifecycle.phase == DRAINING
            # With a work request still out, its answer may hold a job for this pilot: an idle
            # pilot waits for it (a long poll always ends) rather than strand the job; a
            # draining one does not, since the batch system may not wait that long.
            waiting = self._poll_outstanding and not draining
            if decision.exit and not waiting:
                self.exit_reason = decision.reason
                break
            if now >= self._next_try:
                self._talk(now, decision.take_work, decision.time_left_s)
            self._wake.wait(self._sleep_time())
            self._wake.clear()
        return self._shutdown()

    def _flush_due(self, now: float, pending: int) -> bool:
        """Whether pending reports go out now: always, unless jobs are queued (the pilot is
        streaming short jobs), when they wait for the end of the coalescing window or for
        ``_FLUSH_AT`` of them."""
        return not self.queued or pending >= _FLUSH_AT or now >= self._last_flush + _COALESCE_S

    def _sleep_time(self) -> float:
        """Until the next tick, or the end of the coalescing window if reports wait; while
        jobs stream (queued jobs), at most one window, since their reports do not wake the
        main loop."""
        if len(self.spool) and not self._flush_outstanding and self.clock() >= self._next_try:
            return max(0.0, min(_TICK, self._last_flush + _COALESCE_S - self.clock()))
        return _COALESCE_S if self.queued else _TICK

    def _register_until_done(self) -> Optional[int]:
        """Register, retrying with back-off; an exit code if the pilot must give up."""
        while True:
            now = self.clock()
            try:
                self._register()
                return None
            except ServerRejected as exc:
                log.error("the server refused this pilot: %s", exc)
                return EXIT_REJECTED
            except ServerUnreachable as exc:
                self._failures += 1
                decision = self.lifecycle.decide(now, 0)
                if decision.exit or self._signals:
                    log.error("server unreachable, giving up: %s", exc)
                    return EXIT_UNREACHABLE
                delay = self.backoff.delay(self._failures, exc.retry_after)
                log.warning("cannot register (%s); retry in %.1f s", exc, delay)
                self._wake.wait(delay)
                self._wake.clear()

    def _register(self) -> None:
        with self._book:
            free = self.slots.free()
            ad = slot_ad(
                self.facts,
                self.settings,
                agent_version=AGENT_VERSION,
                free_cores=free.cores,
                free_memory_mb=free.memory_mb,
                running_jobs=len(self.runners),
                time_left_s=self.lifecycle.time_left(self.clock()),
            )
        reply = self.client.register(ad, AGENT_VERSION, self.settings.queue, self.facts.batch_id)
        self.heartbeat_s = float(self.settings.heartbeat or reply.get("heartbeat_interval_s") or 30)
        self.poll_wait_s = float(self.settings.poll_wait or reply.get("poll_wait_s") or 20)
        self._failures = 0
        self._next_heartbeat = self.clock()
        log.info("registered as pilot %s (%d cores)", self.client.pilot_id, self.facts.cores)

    def _talk(self, now: float, take_work: bool, time_left: Optional[float]) -> None:
        """One round of server calls; a failure backs off the next round."""
        try:
            # Reports and the work request each go in a thread of their own, so neither waits
            # for the other, and the heartbeat below waits for neither. Reports are started
            # first: a job's ``started`` report is then on its way before the next long poll.
            if self._held and not self._flush_outstanding:
                self._release_held()
            pending = len(self.spool)
            if pending and not self._flush_outstanding and self._flush_due(now, pending):
                self._last_flush = now
                self._start_flush()
            if take_work:
                self._start_poll(time_left)
            if now >= self._next_heartbeat:
                self._heartbeat()
                self._next_heartbeat = now + self.heartbeat_s
                self._failures = 0  # an answer: the server is back (see _take_polled too)
        except (ServerUnreachable, ServerRejected) as exc:
            self._call_failed(now, exc)

    def _call_failed(self, now: float, exc: Exception, pilot_id: Optional[str] = None) -> None:
        """A server call failed: register again if the pilot is unknown, else back off.

        ``pilot_id`` is the id the failed call was made with; a 404 for an id already replaced
        by a new registration needs nothing more.
        """
        if pilot_id is not None and pilot_id != self.client.pilot_id:
            return
        if isinstance(exc, ServerRejected) and exc.status in (404, 410):
            log.warning("the server no longer knows this pilot; registering again")
            try:
                self._register()
                return
            except (ServerUnreachable, ServerRejected) as again:
                exc = again
        self._server_down(now, exc)

    def _server_down(self, now: float, exc: Exception) -> None:
        self._failures += 1
        retry_after = getattr(exc, "retry_after", None)
        delay = self.backoff.delay(self._failures, retry_after)
        self._next_try = now + delay
        log.warning("server call failed (%s); next try in %.1f s", exc, delay)

    # -- work ----------------------------------------------------------------------------------

    def _start_poll(self, time_left: Optional[float]) -> None:
        # One work request at a time, and not before its answer has been taken: the free slots
        # it advertises must not count jobs that are already on their way.
        if self._poll_outstanding:
            return
        with self._book:
            free = self.slots.free()
            # Queued jobs take the free slots first (in order), so a request with jobs queued
            # asks only for more queue; the queue is refilled once half of it has been used,
            # so that each request brings a batch rather than the one job just started.
            max_jobs = free.jobs if free.cores > 0 and not self.queued else 0
            limit = self._prefetch_limit()
            prefetch = limit - len(self.queued) if len(self.queued) <= limit // 2 else 0
            if max_jobs <= 0 and prefetch <= 0:
                return
            running = len(self.runners)
        body = {
            "free_cores": free.cores,
            "free_memory_mb": free.memory_mb,
            "time_left_s": time_left,
            "max_jobs": max_jobs,
            "prefetch": prefetch,
            "wait_s": self.poll_wait_s,
            "ad_update": dynamic_attributes(
                self.facts,
                free_cores=free.cores,
                free_memory_mb=free.memory_mb,
                running_jobs=running,
                time_left_s=time_left,
            ),
        }
        self._poll_outstanding = True
        pilot_id = self.client.pilot_id
        self._threads.run(lambda: self._poll(body, pilot_id), "work-poll")

    def _wants_work(self) -> bool:
        """Whether a work request would go out now (see :meth:`_start_poll`): a free slot with
        nothing queued, or a queue used down to half its limit. Under ``_book``."""
        if self._poll_outstanding:
            return False
        if not self.queued:
            return True
        return len(self.queued) <= self._prefetch_limit() // 2

    def _prefetch_limit(self) -> int:
        """How many jobs may wait here for a slot (the ``prefetch`` setting; automatic: about
        ``_QUEUED_WORK_S`` of work per slot while the recent jobs were short, none before a job
        has ended)."""
        if self.settings.prefetch >= 0:
            return self.settings.prefetch
        recent = self._recent_wall_s
        if recent is None or recent >= _SHORT_JOB_S:
            return 0
        per_slot = int(_QUEUED_WORK_S / max(recent, 1e-3))
        return max(1, min(_MAX_QUEUED_PER_SLOT, per_slot)) * self.slots.max_jobs

    def _poll(self, body: Dict[str, Any], pilot_id: Optional[str]) -> None:
        try:
            self._polled.put((pilot_id, self.client.request_work(**body)))
        except Exception as exc:  # handed to the main thread, which owns the back-off
            self._polled.put((pilot_id, exc))
        self._wake.set()

    def _take_polled(self, now: float) -> None:
        while True:
            try:
                pilot_id, item = self._polled.get_nowait()
            except queue.Empty:
                return
            self._poll_outstanding = False
            if isinstance(item, Exception):
                self._call_failed(now, item, pilot_id)
            else:
                # Only an answer resets the back-off: starting a call in a thread says nothing
                # about the server, and resetting there kept the delay at its first step.
                self._failures = 0
                self._accept(item, now)

    def _accept(self, raws: List[Any], now: float) -> None:
        """Queue and start the job specs of a work reply, or report why one cannot run here.
        They are parsed before the job threads' lock is taken: a reply holds many."""
        specs: List[JobSpec] = []
        for raw in raws:
            try:
                specs.append(parse_job_spec(raw))
            except JobSpecError as exc:
                log.error("%s", exc)
                if exc.job_id is not None and exc.attempt is not None:
                    self._report(
                        exc.job_id, exc.attempt, "finished", status=SETUP_FAILED, reason=str(exc)
                    )
        with self._book:
            for spec in specs:
                if spec.key in self.runners or spec.key in self.queued:
                    continue
                if self.lifecycle.phase == DRAINING:
                    refusal = f"pilot is draining ({self.lifecycle.drain_reason})"
                else:
                    refusal = self.slots.never_fits(spec.cores, spec.memory_mb, spec.whole_node)
                if refusal:
                    self._refuse(spec, refusal)
                else:
                    self.queued.append(spec)
            self._start_queued(now)

    def _refuse(self, spec: JobSpec, reason: str) -> None:
        log.warning("refusing job %s: %s", spec.key, reason)
        self._report(
            spec.job_id,
            spec.attempt,
            "finished",
            status=REFUSED,
            reason=reason,
            payload_started=False,
        )

    def _refuse_queued(self, reason: str) -> None:
        while self.queued:
            self._refuse(self.queued.popleft(), reason)

    def _start_queued(self, now: float, inline: bool = False) -> Optional[JobRunner]:
        """Start queued jobs, oldest first, while the oldest fits the free slots (under
        ``_book``). With ``inline``, the first is not started but returned, for the calling
        job thread to run. Nothing starts while the pilot drains or closes: the main loop
        refuses what is queued then."""
        if self._closing or self._signals or self.lifecycle.phase == DRAINING:
            return None
        first: Optional[JobRunner] = None
        while self.queued:
            spec = self.queued.first()
            if not self.lifecycle.job_fits(spec.max_wall_time_s, now):
                self.queued.popleft()
                self._refuse(spec, "job does not fit the pilot's time left")
                continue
            reservation = self.slots.reserve(spec.key, spec.cores, spec.memory_mb, spec.whole_node)
            if not reservation.granted:
                if self.runners:
                    return first  # it fits once a running job ends
                self.queued.popleft()
                self._refuse(spec, reservation.reason)
                continue
            self.queued.popleft()
            runner = JobRunner(spec, self.context, reservation.cores, self._on_event, self._on_done)
            self.runners[spec.key] = runner
            self.lifecycle.on_job_started(now)
            log.info("starting job %s on %d cores", spec.key, reservation.cores)
            if inline and first is None:
                first = runner
            else:
                runner.start()
        return first

    def _retire(self, runner: JobRunner, now: float) -> None:
        """Forget a job that has ended (under ``_book``)."""
        self.runners.pop(runner.spec.key, None)
        self.slots.release(runner.spec.key)
        self._peek_sizes.pop(runner.spec.key, None)
        self.lifecycle.on_job_finished(now, len(self.runners))
        result = runner.result
        if result is not None:
            log.info("job %s ended %s %s", runner.spec.key, result.status, result.reason)
            if result.status not in (REFUSED, SETUP_FAILED):
                previous = self._recent_wall_s
                wall = max(0.0, result.wall_s)
                self._recent_wall_s = wall if previous is None else 0.8 * previous + 0.2 * wall

    # -- heartbeat, commands, reports ----------------------------------------------------------

    def _heartbeat(self) -> None:
        with self._book:
            jobs = [
                {
                    "job_id": r.spec.job_id,
                    "attempt": r.spec.attempt,
                    "cpu_s": round(r.cpu_s, 3),
                    "rss_mb": round(r.rss_mb, 1),
                    "payload_started": r.payload_started,
                }
                for r in self.runners.values()
            ]
            # A queued job is held by this pilot too: listing it keeps its lease.
            jobs.extend(
                {
                    "job_id": q.job_id,
                    "attempt": q.attempt,
                    "cpu_s": 0.0,
                    "rss_mb": 0.0,
                    "payload_started": False,
                }
                for q in self.queued
            )
            state = "draining" if self.lifecycle.phase == DRAINING else "running"
        for command in self.client.heartbeat(state, jobs):
            with self._book:
                self._command(command)
        with self._book:
            perused = [r for r in self.runners.values() if r.spec.perusal]
        for runner in perused:
            self._peek(runner, only_if_grown=True)

    def _command(self, command: Dict[str, Any]) -> None:
        action = command.get("action")
        key = f"{command.get('job_id')}/{command.get('attempt')}"
        runner = self.runners.get(key)
        if action == "cancel":
            reason = str(command.get("reason") or "cancelled by the server")
            if runner is not None:
                log.info("cancelling job %s on the server's command", key)
                runner.cancel(reason)
            for spec in [q for q in self.queued if q.key == key]:
                # Never started: it ends here, as a running job would after its kill.
                log.info("cancelling queued job %s on the server's command", key)
                self.queued.remove(spec)
                self._report(
                    spec.job_id,
                    spec.attempt,
                    "finished",
                    status=CANCELLED,
                    reason=reason,
                    payload_started=False,
                )
        elif action == "drain":
            grace = command.get("grace_s")
            reason = str(command.get("reason") or "drain requested by the server")
            log.info("draining: %s", reason)
            self.lifecycle.on_drain(
                self.clock(), reason, float(grace) if isinstance(grace, (int, float)) else None
            )
        elif action == "peek":
            if runner is not None:
                self._peek(runner, only_if_grown=False)
        else:
            log.warning("ignoring unknown command %r", command)

    def _peek(self, runner: JobRunner, only_if_grown: bool) -> None:
        spec = runner.spec
        tail = runner.stdout_tail()
        fingerprint = hash(tail)
        with self._book:
            if only_if_grown and (not tail or self._peek_sizes.get(spec.key) == fingerprint):
                return
            self._peek_sizes[spec.key] = fingerprint
        self._report(spec.job_id, spec.attempt, "peek", stdout_tail=tail)

    def _send_reports(self, reports: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        try:
            return self.client.send_reports(reports)
        except StaleAttempt:
            if len(reports) == 1:
                return [{"report_id": reports[0]["report_id"], "outcome": "stale"}]
            results: List[Dict[str, Any]] = []
            for report in reports:
                results.extend(self._send_reports([report]))
            return results

    def _flush(self) -> None:
        self.spool.flush(self._send_reports)

    def _start_flush(self) -> None:
        """Send the pending reports from a thread; :meth:`_take_flushed` takes the outcome."""
        self._flush_outstanding = True
        pilot_id = self.client.pilot_id
        self._threads.run(lambda: self._flush_thread(pilot_id), "reports")

    def _flush_thread(self, pilot_id: Optional[str]) -> None:
        outcome: Optional[Exception] = None
        try:
            # One batch: the main loop decides when the next is due (the coalescing window),
            # so reports made while this one travels wait to go out together.
            self.spool.flush(self._send_reports, batch_size=_FLUSH_AT, max_batches=1)
        except Exception as exc:  # handed to the main thread, which owns the back-off
            outcome = exc
        self._flushed.put((pilot_id, outcome))
        self._wake.set()

    def _take_flushed(self, now: float) -> None:
        while True:
            try:
                pilot_id, outcome = self._flushed.get_nowait()
            except queue.Empty:
                return
            self._flush_outstanding = False
            if outcome is not None:
                self._call_failed(now, outcome, pilot_id)
            else:
                self._failures = 0

    # -- the end -------------------------------------------------------------------------------

    def _shutdown(self) -> int:
        log.info("pilot exits: %s", self.exit_reason)
        with self._book:
            self._closing = True  # no job thread starts a queued job from now on
            running = list(self.runners.values())
        for runner in running:
            runner.drain(self.exit_reason or "pilot exits")
        for runner in running:
            runner.wait(self.settings.cancel_grace + 30)
        if self._poll_outstanding:
            # Jobs that arrive now are refused (the pilot is draining), so the server can give
            # them to another pilot at once instead of waiting for a lease to run out.
            with self._book:
                self.lifecycle.on_drain(self.clock(), self.exit_reason or "pilot exits", 0.0)
            with contextlib.suppress(queue.Empty):
                self._polled.put(self._polled.get(timeout=5.0))
            self._take_polled(self.clock())
        with self._book:
            self._refuse_queued(f"pilot exits ({self.exit_reason or 'done'})")
        deadline = self.clock() + _FINAL_FLUSH_S
        if self._flush_outstanding:
            with contextlib.suppress(queue.Empty):
                self._flushed.put(self._flushed.get(timeout=_FINAL_FLUSH_S))
            self._take_flushed(self.clock())
        failures = 0
        while len(self.spool) and self.clock() < deadline:
            try:
                self._flush()
            except (ServerUnreachable, ServerRejected) as exc:
                failures += 1
                delay = min(self.backoff.delay(failures), max(0.0, deadline - self.clock()))
                log.warning("cannot send final reports (%s); retry in %.1f s", exc, delay)
                time.sleep(delay)
        if len(self.spool):
            log.error("%d reports left in %s", len(self.spool), self.spool.directory)
        self.spool.close()
        # The blob cache and job directories belong to this pilot only; the spool stays.
        shutil.rmtree(self.cache.directory, ignore_errors=True)
        shutil.rmtree(self.context.jobs_root, ignore_errors=True)
        if self.context.work_dirs is not None:
            self.context.work_dirs.close()
        try:
            self.client.deregister(self.exit_reason or "done")
        except (ServerUnreachable, ServerRejected) as exc:
            log.warning("deregistration failed: %s", exc)
        self.client.transport.close()
        self._lock.close()
        return EXIT_OK
