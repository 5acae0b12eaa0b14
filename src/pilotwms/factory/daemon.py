"""The factory daemon: the thin runner around the pure policy.

One scheduler loop serves every queue on its own ``poll`` period. A single thread, not a thread
per queue, because every queue's decision needs the others' (a job prefers the queue with the
best Rank and overflows to the next only when that one is full or paused: ``policy.plan`` looks
at all queues at once), because queues due at the same moment share one read of the server's
demand, and because one writer keeps ``state.json`` consistent without locks. Batch commands
are bounded by the command runner's timeout, so a slow batch system delays the other queues by
at most that much -- the price of consistent decisions.

A cycle, for the queues that are due:

1. control requests from the command line (``resume``, ``cancel-pilots``);
2. the server's demand (waiting task queues, registered pilots, the current agent version);
   a new agent version is fetched into ``state_dir/agent/`` for local pilots;
3. each due queue's live pilots asked of its batch system; the server is told of changed batch
   states; pilots whose agent registered unblock the queue's rate limiter, pilots that ended
   without ever registering count against it;
4. ``demand.match_demand`` and ``policy.plan`` over all queues; the due ones submit (within their
   rate gate; every new pilot is stored locally before the server is told) and cancel;
5. log tails uploaded for pilots that ended or whose log grew; ended pilots forgotten after
   ``keep_logs_h``; ``state.json`` and ``status.json`` written.

Pilots are never killed when the daemon stops: a restarted factory reads ``state.json`` and
goes on tracking them. Draining pilots (rolling upgrade, ``cancel-pilots``) keep counting toward
``sched_max`` until their batch job ends, and the policy replaces them as they end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pilotwms.agent import AGENT_VERSION
from pilotwms.core.errors import PilotWMSError
from pilotwms.factory.backends import Backend, LocalBackend, make_backend
from pilotwms.factory.backends.base import (
    BackendError,
    BatchState,
    PilotScriptContext,
    SubmitError,
)
from pilotwms.factory.config import (
    FactoryConfig,
    QueueConfig,
    load_factory_config,
    pilot_context,
    slot_attributes,
)
from pilotwms.factory.demand import match_demand
from pilotwms.factory.pilots import AgentReport, StartOutcome, start_outcome, views_by_queue
from pilotwms.factory.policy import Plan, QueueDecision, QueueInput, plan, record_expired
from pilotwms.factory.ratelimit import QueueRateLimiter
from pilotwms.factory.server_api import (
    BatchStateChange,
    DemandSnapshot,
    FactoryServer,
    read_tail,
)
from pilotwms.factory.state import (
    CONTROL_DIR,
    STATUS_FILE,
    FactoryState,
    PilotRecord,
    StateLock,
    write_atomic,
)

__all__ = ["Factory", "request_id", "run_factory"]

log = logging.getLogger("pilotwms.factory")

#: A pilot the batch system does not know for this long is taken as gone.
UNKNOWN_GRACE_S = 600.0
#: A pilot cancelled gently (drained) and still in the batch system after this long is removed.
DRAIN_KILL_S = 300.0
#: Pilot tokens live a week, or longer than the longest walltime of any queue.
TOKEN_LIFETIME_S = 7 * 24 * 3600.0


@dataclass
class _Queue:
    """The daemon's working state of one queue (the persisted part is in ``FactoryState``)."""

    config: QueueConfig
    backend: Backend
    limiter: QueueRateLimiter
    next_due: float = 0.0
    last_cycle_at: float | None = None
    last_decision: QueueDecision | None = None
    last_error: str | None = None
    reports: dict[str, AgentReport] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


class Factory:
    """Keeps every configured queue supplied with pilots; see the module docstring."""

    def __init__(
        self,
        config: FactoryConfig,
        server: FactoryServer,
        *,
        agent_url: str | None = None,
        pilot_token: str | None = None,
        backends: Mapping[str, Backend] | None = None,
        clock: Callable[[], float] = time.time,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.server = server
        self.settings = config.settings
        self.state_dir = self.settings.state_dir
        self.agent_url = agent_url
        #: a token given by the caller (``pilotwms up``) instead of one asked of the server
        self.fixed_pilot_token = pilot_token
        self.clock = clock
        self.config_path = config_path
        self._config_mtime = _mtime(config_path)
        self.name = self.settings.name or socket.gethostname() or "factory"
        self.state = FactoryState.load(self.state_dir)
        self.agent_version = ""
        self._zipapps: dict[str, Path] = {}
        self.started_at = clock()
        self.last_cycle_at: float | None = None
        self.errors: list[str] = []
        self.unmatched: dict[str, int] = {}
        self.queues: dict[str, _Queue] = {}
        self._given_backends = dict(backends or {})
        #: called in the factory's thread after every cycle (``pilotwms up`` records its pilots)
        self.on_cycle: Callable[[Factory], None] | None = None
        self._setup_queues(config)

    # -- set-up -------------------------------------------------------------------------------

    def _setup_queues(self, config: FactoryConfig) -> None:
        old = self.queues
        self.queues = {}
        for qc in config.queues:
            record = self.state.queue(qc.name)
            previous = old.get(qc.name)
            if previous is not None and previous.config.backend == qc.backend:
                previous.config = qc
                previous.limiter.rules = qc.rate_limit.rules()
                self.queues[qc.name] = previous
                continue
            backend = self._given_backends.get(qc.name) or make_backend(
                qc.backend, pbs_flavor=qc.options.pbs_flavor
            )
            if isinstance(backend, LocalBackend) and backend.log_dir is None:
                backend.log_dir = self.settings.queue_dir(qc.name)
            self.queues[qc.name] = _Queue(
                qc, backend, record.limiter(qc.name, qc.rate_limit.rules())
            )

    def publish_queues(self) -> None:
        """Put every queue's static ad in the server's resource registry (list-match)."""
        for q in self.queues.values():
            try:
                self.server.publish_queue(q.name, slot_attributes(q.config))
            except PilotWMSError as exc:
                q.last_error = f"cannot publish the queue: {exc.message}"
                log.warning("queue %s: %s", q.name, q.last_error)

    def reload_config_if_changed(self) -> bool:
        """Re-read the configuration file when it changed; a broken file keeps the old one."""
        if self.config_path is None:
            return False
        mtime = _mtime(self.config_path)
        if mtime == self._config_mtime:
            return False
        self._config_mtime = mtime
        try:
            config = load_factory_config(self.config_path)
        except PilotWMSError as exc:
            self.errors = [f"configuration not reloaded: {exc.message}"]
            log.error("%s", self.errors[0])
            return False
        self.config = config
        self._setup_queues(config)
        self.publish_queues()
        log.info("configuration reloaded from %s", self.config_path)
        return True

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve the queues until ``stop`` is set. The caller holds the state lock."""
        self.publish_queues()
        self.serve(stop)

    def serve(self, stop: threading.Event) -> None:
        """The scheduler loop: each queue's cycle when its ``poll`` period is up."""
        while not stop.is_set():
            self.reload_config_if_changed()
            now = self.clock()
            due = [q.name for q in self.queues.values() if q.next_due <= now]
            if due:
                try:
                    self.cycle(due)
                except Exception as exc:  # a daemon outlives one bad cycle
                    log.exception("factory cycle failed")
                    self.errors.append(f"cycle failed: {type(exc).__name__}: {exc}")
                    after = self.clock()
                    for name in due:
                        self.queues[name].next_due = after + self.queues[name].config.poll
                    with contextlib.suppress(OSError):
                        self.write_status()
            wake = min((q.next_due for q in self.queues.values()), default=now + 1.0)
            stop.wait(max(0.05, min(wake - self.clock(), 5.0)))
        self.state.save()
        self.write_status(stopped=True)

    def cycle(self, due: Sequence[str] | None = None) -> Plan | None:
        """One factory cycle for the queues in ``due`` (all when None)."""
        now = self.clock()
        names = [n for n in (due or list(self.queues)) if n in self.queues]
        self.errors = [e for e in self.errors if e.startswith("configuration")]
        self.handle_control_requests()
        try:
            demand = self.server.demand()
        except PilotWMSError as exc:
            self._fail(names, f"cannot read the demand: {exc.message}")
            self._finish(names, now)
            return None
        self._note_agent_version(demand.agent_version)
        for name in names:
            self._refresh(self.queues[name], demand, now)
        self._record_on_server()
        self._tell_batch_states(names)
        match = match_demand(demand.task_queues, [q.config for q in self.queues.values()])
        self.unmatched = dict(match.unmatched)
        for tq, problem in match.problems.items():
            self.errors.append(f"task queue {tq}: {problem}")
        inputs = []
        for q in self.queues.values():
            records = [r.submitted() for r in self.state.live(q.name)]
            views = views_by_queue(records, q.reports).get(q.name, [])
            memory = self.state.queue(q.name).memory
            inputs.append(QueueInput(q.config.limits(), views, q.limiter.gate(now), memory))
        decided = plan(inputs, match.demand, now)
        for name in names:
            q = self.queues[name]
            decision = decided.decisions[name]
            q.last_decision = decision
            self.state.queue(name).remember(decision.memory)
            self._cancel(q, decision.cancel, "no longer needed: " + decision.reason, now)
            if decision.submit:
                self._submit(q, decision, demand.agent_version, now)
        self._record_on_server()
        for name in names:
            self._upload_logs(self.queues[name])
            self._forget_expired(self.queues[name], now)
        self._finish(names, now)
        return decided

    def _finish(self, names: Sequence[str], now: float) -> None:
        after = self.clock()
        for name in names:
            q = self.queues[name]
            q.last_cycle_at = now
            q.next_due = after + q.config.poll
            self.state.queue(name).keep(q.limiter)
        self.last_cycle_at = now
        self.state.save()
        self.write_status()
        if self.on_cycle is not None:
            self.on_cycle(self)

    def _fail(self, names: Sequence[str], message: str) -> None:
        log.warning("%s", message)
        for name in names:
            self.queues[name].last_error = message

    # -- batch states ---------------------------------------------------------------------------

    def _refresh(self, q: _Queue, demand: DemandSnapshot, now: float) -> None:
        """Ask the batch system about the queue's live pilots; count starts and deaths."""
        q.reports = demand.reports(q.name)
        q.last_error = None
        live = self.state.live(q.name)
        if live:
            try:
                states = q.backend.status([r.batch_id for r in live])
            except PilotWMSError as exc:
                q.last_error = f"cannot read pilot states: {exc.message}"
                log.warning("queue %s: %s", q.name, q.last_error)
                states = {}
            for rec in live:
                seen = states.get(rec.batch_id)
                if seen is None:
                    continue
                if seen.state is BatchState.UNKNOWN:
                    rec.unknown_since = rec.unknown_since or now
                    if now - rec.unknown_since < max(UNKNOWN_GRACE_S, 10 * q.config.poll):
                        continue
                    seen = replace(
                        seen, state=BatchState.FAILED, reason="the batch system lost track of it"
                    )
                else:
                    rec.unknown_since = None
                rec.state = seen.state.value
                rec.native = seen.native
                rec.reason = seen.reason
                rec.exit_code = seen.exit_code
                if seen.state.ended and rec.ended_at is None:
                    rec.ended_at = now
        overdue = [
            r.batch_id
            for r in self.state.live(q.name)
            if r.cancelled and r.cancelled_at is not None and now - r.cancelled_at > DRAIN_KILL_S
        ]
        if overdue:
            # Drained pilots that still hold their batch slot long after: remove them for good.
            with contextlib.suppress(PilotWMSError):
                q.backend.cancel(overdue)
        for rec in self.state.of_queue(q.name):
            if rec.outcome_counted:
                continue
            report = q.reports.get(rec.batch_id)
            if report is not None:
                rec.registered = True
            outcome = (
                StartOutcome.STARTED if rec.registered else start_outcome(rec.submitted(), None)
            )
            if outcome is StartOutcome.STARTED:
                q.limiter.record_pilot_started(now)
                rec.outcome_counted = True
            elif outcome is StartOutcome.DIED:
                rec.outcome_counted = True
                if not rec.cancelled:
                    label = rec.pilot_id or rec.batch_id
                    q.limiter.record_start_failure(now, label, self._death_reason(q, rec))

    def _death_reason(self, q: _Queue, rec: PilotRecord) -> str:
        """The batch system's reason and the last line the pilot wrote on stderr."""
        reason = rec.reason or rec.native or rec.state
        err = q.backend.log_paths(rec.batch_id, self.settings.queue_dir(q.name)).stderr
        lines = [line for line in read_tail(err, 4096).splitlines() if line.strip()]
        return f"{reason}; stderr: {lines[-1][:200]}" if lines else reason

    def _tell_batch_states(self, names: Sequence[str]) -> None:
        for name in names:
            q = self.queues[name]
            changed = [
                rec
                for rec in self.state.of_queue(name)
                if rec.pilot_id is not None
                and rec.state not in (BatchState.UNKNOWN, rec.reported_state)
            ]
            if not changed:
                continue
            changes = [
                BatchStateChange(
                    rec.batch_id,
                    rec.state,
                    rec.cancel_reason if rec.cancelled and rec.ended else rec.reason,
                )
                for rec in changed
            ]
            try:
                self.server.batch_states(name, changes)
            except PilotWMSError as exc:
                q.last_error = f"cannot report batch states: {exc.message}"
                continue
            for rec in changed:
                rec.reported_state = rec.state

    def _record_on_server(self) -> None:
        """Tell the server of pilots it does not know yet (retried every cycle until it works)."""
        pending: dict[str, list[PilotRecord]] = {}
        for rec in self.state.pilots.values():
            if rec.pilot_id is None and rec.queue in self.queues:
                pending.setdefault(rec.queue, []).append(rec)
        for name, recs in pending.items():
            q = self.queues[name]
            logs = {}
            for rec in recs:
                paths = q.backend.log_paths(rec.batch_id, self.settings.queue_dir(name))
                logs[rec.batch_id] = {"stdout": str(paths.stdout), "stderr": str(paths.stderr)}
            try:
                ids = self.server.record_pilots(
                    name, q.config.backend, [r.batch_id for r in recs], self.name, logs
                )
            except PilotWMSError as exc:
                q.last_error = f"cannot record pilots on the server: {exc.message}"
                continue
            for rec in recs:
                rec.pilot_id = ids.get(rec.batch_id)

    # -- submission and cancellation ----------------------------------------------------------

    def pilot_token(self, now: float) -> str:
        """The pilot token for new pilots: renewed while it still outlives any pilot."""
        if self.fixed_pilot_token is not None:
            return self.fixed_pilot_token
        longest = max((q.config.ad.walltime_s for q in self.queues.values()), default=3600)
        token = self.state.pilot_token
        if token is None or self.state.pilot_token_expires_at - now < longest + 3600:
            lifetime = max(TOKEN_LIFETIME_S, 2.0 * longest)
            issued = self.server.pilot_token(lifetime, f"pilotwms factory {self.name}")
            self.state.pilot_token = token = issued.token
            self.state.pilot_token_expires_at = issued.expires_at
            self.state.save()
        return token

    def _note_agent_version(self, version: str) -> None:
        if version and version != self.agent_version:
            if self.agent_version:
                log.info("agent version %s -> %s", self.agent_version, version)
            self.agent_version = version

    def _agent_path(self, version: str) -> Path:
        """The server's zipapp of ``version`` on this machine, fetched once."""
        path = self._zipapps.get(version)
        if path is None or not path.is_file():
            got, path = self.server.fetch_agent(self.state_dir / "agent")
            self._zipapps[got] = path
            if got != version:
                raise BackendError(
                    "local",
                    f"the server's agent changed again while it was fetched ({version} -> {got})",
                )
        return path

    def _context(
        self, q: _Queue, warm: bool, version: str, now: float
    ) -> tuple[PilotScriptContext, str]:
        """The pilot context of ``q`` and the agent version its pilots will run."""
        token = self.pilot_token(now)
        ctx = pilot_context(q.config, self.settings, token, self.agent_url, warm=warm)
        if q.config.options.agent:
            return ctx, ""
        if q.config.backend == "local" and version and version != AGENT_VERSION:
            # The installed package is another version than the server's: run the server's.
            return replace(ctx, agent=str(self._agent_path(version))), version
        if q.config.backend == "local":
            return ctx, AGENT_VERSION
        return ctx, version

    def _submit(self, q: _Queue, decision: QueueDecision, version: str, now: float) -> None:
        for warm, count in ((True, decision.warm), (False, decision.submit - decision.warm)):
            if count <= 0:
                continue
            try:
                ctx, running = self._context(q, warm, version, now)
            except PilotWMSError as exc:
                q.last_error = f"cannot prepare pilots: {exc.message}"
                log.warning("queue %s: %s", q.name, q.last_error)
                return
            failure = None
            try:
                ids = q.backend.submit(count, ctx)
            except SubmitError as exc:
                ids, failure = exc.submitted, exc.message
            except PilotWMSError as exc:
                ids, failure = [], exc.message
            for batch_id in ids:
                self.state.add(
                    PilotRecord(
                        batch_id=batch_id,
                        queue=q.name,
                        backend=q.config.backend,
                        submitted_at=now,
                        warm=warm,
                        agent_version=running,
                    )
                )
            if ids:
                # Stored before anything else can fail: a pilot must never go untracked.
                self.state.save()
                q.limiter.record_submitted(now, len(ids))
                log.info("queue %s: submitted %d pilot(s): %s", q.name, len(ids), " ".join(ids))
            if failure is not None:
                q.limiter.record_submit_failure(now, failure)
                q.last_error = f"submission failed: {failure}"
                log.warning("queue %s: %s", q.name, q.last_error)
                return

    def _cancel(
        self, q: _Queue, ids: Sequence[str], reason: str, now: float, gently: bool = False
    ) -> list[str]:
        """Cancel pilots; ``gently``: let running ones drain (``Backend.drain``)."""
        if not ids:
            return []
        try:
            if gently:
                q.backend.drain(list(ids))
            else:
                q.backend.cancel(list(ids))
        except PilotWMSError as exc:
            q.last_error = f"cannot cancel pilots: {exc.message}"
            log.warning("queue %s: %s", q.name, q.last_error)
            return []
        for batch_id in ids:
            rec = self.state.pilots.get(f"{q.name}/{batch_id}")
            if rec is not None:
                rec.cancelled = True
                rec.cancel_reason = reason
                rec.cancelled_at = now
        log.info("queue %s: cancelled %s (%s)", q.name, " ".join(ids), reason)
        return list(ids)

    def cancel_pilots(self, queue: str | None, reason: str) -> dict[str, list[str]]:
        """Cancel every live pilot (of ``queue``): their agents drain and their running jobs are
        requeued as shallow retries; the policy then decides afresh."""
        now = self.clock()
        done: dict[str, list[str]] = {}
        for q in self.queues.values():
            if queue is not None and q.name != queue:
                continue
            ids = [r.batch_id for r in self.state.live(q.name) if not r.cancelled]
            done[q.name] = self._cancel(q, ids, reason, now, gently=True)
        self.state.save()
        return done

    def resume(self, queue: str) -> None:
        q = self.queues[queue]
        q.limiter.resume(self.clock())
        self.state.queue(queue).keep(q.limiter)
        self.state.save()

    # -- logs and expiry ----------------------------------------------------------------------

    def _upload_logs(self, q: _Queue) -> None:
        for rec in self.state.of_queue(q.name):
            if rec.pilot_id is None or rec.logs_final:
                continue
            paths = q.backend.log_paths(rec.batch_id, self.settings.queue_dir(q.name))
            try:
                for stream, path in (("stdout", paths.stdout), ("stderr", paths.stderr)):
                    try:
                        size = path.stat().st_size
                    except OSError:
                        continue
                    if size == rec.log_sizes.get(stream, 0) and (size == 0 or not rec.ended):
                        continue
                    self.server.upload_log(rec.pilot_id, stream, read_tail(path), size)
                    rec.log_sizes[stream] = size
            except PilotWMSError as exc:
                q.last_error = f"cannot upload pilot logs: {exc.message}"
                return
            if rec.ended:
                rec.logs_final = True

    def _forget_expired(self, q: _Queue, now: float) -> None:
        for rec in self.state.of_queue(q.name):
            if rec.ended_at is None or not record_expired(
                rec.ended_at, now, self.settings.keep_logs_h
            ):
                continue
            q.backend.forget(rec.batch_id, self.settings.queue_dir(q.name))
            del self.state.pilots[rec.key]

    # -- control requests and status ----------------------------------------------------------

    def handle_control_requests(self) -> None:
        """Requests the command line left in ``state_dir/control``; each is answered beside it."""
        folder = self.state_dir / CONTROL_DIR
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("request-*.json")):
            try:
                request = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(request, dict):
                    # Answered, not raised: a request left in place would fail every cycle.
                    raise ValueError(f"not a JSON object: {request!r}"[:200])
                answer = self.apply_request(request)
            except (OSError, ValueError) as exc:
                answer = {"ok": False, "message": f"unreadable request: {exc}"}
            answer_path = path.with_name(path.name.replace("request-", "answer-", 1))
            write_atomic(answer_path, json.dumps(answer) + "\n")
            with contextlib.suppress(OSError):
                path.unlink()

    def apply_request(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out one ``resume`` or ``cancel-pilots`` request; the answer says what it did."""
        action = request.get("action")
        queue = request.get("queue")
        if queue is not None and queue not in self.queues:
            known = ", ".join(self.queues) or "none"
            return {"ok": False, "message": f"no queue {queue!r} (queues: {known})"}
        if action == "resume":
            if queue is None:
                return {"ok": False, "message": "resume needs a queue name"}
            was = self.queues[queue].limiter.paused_reason
            self.resume(queue)
            if was is None:
                return {"ok": True, "message": f"queue {queue} was not paused; back-off cleared"}
            return {"ok": True, "message": f"queue {queue} resumed (was: {was})"}
        if action == "cancel-pilots":
            done = self.cancel_pilots(queue, "cancelled by an operator (factory cancel-pilots)")
            total = sum(len(v) for v in done.values())
            parts = ", ".join(f"{name}: {len(ids)}" for name, ids in done.items())
            return {
                "ok": True,
                "cancelled": done,
                "message": f"cancelled {total} pilot(s) ({parts or 'no queues'}); their running "
                "jobs are requeued",
            }
        return {"ok": False, "message": f"unknown action {action!r}"}

    def status(self, stopped: bool = False) -> dict[str, Any]:
        """What ``pilotwms factory status`` shows."""
        queues = {}
        for q in self.queues.values():
            phases: dict[str, int] = {}
            records = [r.submitted() for r in self.state.live(q.name)]
            for view in views_by_queue(records, q.reports).get(q.name, []):
                phases[view.phase.value] = phases.get(view.phase.value, 0) + 1
            ended = sum(1 for r in self.state.of_queue(q.name) if r.ended)
            gate = q.limiter.gate(self.clock())
            decision = q.last_decision
            queues[q.name] = {
                "backend": q.config.backend,
                "poll": q.config.poll,
                "sched_min": q.config.sched_min,
                "sched_max": q.config.sched_max,
                "pilots": phases,
                "ended_kept": ended,
                "cancelling": sum(1 for r in self.state.live(q.name) if r.cancelled),
                "paused": q.limiter.paused,
                "pause_reason": q.limiter.paused_reason,
                "rate_limit": gate.reason,
                "last_failure": q.limiter.last_failure,
                "last_decision": None
                if decision is None
                else {
                    "submit": decision.submit,
                    "cancel": list(decision.cancel),
                    "reason": decision.reason,
                },
                "last_error": q.last_error,
                "last_cycle_at": q.last_cycle_at,
                "next_cycle_at": q.next_due,
            }
        return {
            "pid": os.getpid(),
            "name": self.name,
            "server_url": self.settings.server_url,
            "running": not stopped,
            "started_at": self.started_at,
            "last_cycle_at": self.last_cycle_at,
            "written_at": self.clock(),
            "agent_version": self.agent_version,
            "unmatched_task_queues": self.unmatched,
            "errors": self.errors,
            "queues": queues,
        }

    def write_status(self, stopped: bool = False) -> None:
        write_atomic(
            self.state_dir / STATUS_FILE,
            json.dumps(self.status(stopped), indent=1) + "\n",
            mode=0o644,
        )


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def request_id() -> str:
    return f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"


def run_factory(
    config: FactoryConfig,
    server: FactoryServer,
    *,
    agent_url: str | None = None,
    config_path: Path | None = None,
    stop: threading.Event | None = None,
) -> int:
    """The ``pilotwms factory run`` daemon: lock the state, serve until SIGTERM/SIGINT."""
    stop = stop or threading.Event()
    with StateLock(config.settings.state_dir):
        factory = Factory(config, server, agent_url=agent_url, config_path=config_path)
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
        try:
            log.info(
                "factory %s: %d queue(s), %d pilot(s) remembered, state in %s",
                factory.name,
                len(factory.queues),
                len(factory.state.live()),
                factory.state_dir,
            )
            factory.run(stop)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        log.info("factory stopped; its pilots keep running and a restart picks them up")
    return 0
