"""What the factory remembers across restarts: its pilots, its queues' back-off, its token.

Everything lives in ``state_dir/state.json``, written atomically (a temporary file, ``fsync``,
``rename``) after every change that matters, so a factory killed at any moment restarts with
every pilot it submitted -- it neither loses a live pilot (which would then never be counted
and the queue would be over-filled) nor counts one twice. The file holds the pilot token, so
it is private to its owner (mode 0600).

``status.json`` beside it is the daemon's report for ``pilotwms factory status``: rewritten
every cycle, never read back by the daemon. Requests from the command line (resume a paused
queue, cancel pilots) arrive as files in ``state_dir/control/`` and are answered there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from pilotwms.core.errors import ConfigurationError
from pilotwms.factory.backends.base import BatchState, PilotBatchState
from pilotwms.factory.pilots import SubmittedPilot
from pilotwms.factory.policy import QueueMemory
from pilotwms.factory.ratelimit import QueueRateLimiter, RateLimitRules

__all__ = [
    "CONTROL_DIR",
    "LOCK_FILE",
    "STATE_FILE",
    "STATUS_FILE",
    "FactoryLockedError",
    "FactoryState",
    "PilotRecord",
    "QueueRecord",
    "StateLock",
    "write_atomic",
]

STATE_FILE = "state.json"
STATUS_FILE = "status.json"
LOCK_FILE = "factory.lock"
CONTROL_DIR = "control"
_FORMAT = 1


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@dataclass
class PilotRecord:
    """One pilot the factory submitted, from submission until its record expires."""

    batch_id: str
    queue: str
    backend: str
    submitted_at: float
    warm: bool = False
    #: the batch system's view, as last seen
    state: str = BatchState.QUEUED.value
    native: str = ""
    reason: str = ""
    exit_code: int | None = None
    #: the server's pilot id, once the submission is recorded there
    pilot_id: str | None = None
    #: the batch state the server was last told
    reported_state: str = ""
    #: its agent registered at some point (seen in the server's demand)
    registered: bool = False
    #: the start outcome went to the rate limiter already
    outcome_counted: bool = False
    #: cancelled by the factory (policy or operator), so its end says nothing about the queue
    cancelled: bool = False
    cancel_reason: str = ""
    cancelled_at: float | None = None
    ended_at: float | None = None
    unknown_since: float | None = None
    #: agent version the pilot was started with ("" : the installed package)
    agent_version: str = ""
    #: log stream -> size uploaded last
    log_sizes: dict[str, int] = field(default_factory=dict)
    logs_final: bool = False

    @property
    def key(self) -> str:
        return f"{self.queue}/{self.batch_id}"

    @property
    def batch_state(self) -> BatchState:
        return BatchState(self.state)

    @property
    def ended(self) -> bool:
        return self.batch_state.ended

    def submitted(self) -> SubmittedPilot:
        """The pure view ``pilots.views_by_queue`` and ``start_outcome`` take."""
        batch = PilotBatchState(self.batch_state, self.native, self.reason, self.exit_code)
        return SubmittedPilot(self.batch_id, self.queue, self.submitted_at, batch, self.warm)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PilotRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class QueueRecord:
    """A queue's memory between cycles: the policy's timers and the rate limiter's streaks."""

    backlog_since: float | None = None
    surplus_since: float | None = None
    submit_failures: int = 0
    start_failures: int = 0
    next_allowed_at: float = 0.0
    paused_reason: str | None = None
    last_failure: str | None = None

    @property
    def memory(self) -> QueueMemory:
        return QueueMemory(self.backlog_since, self.surplus_since)

    def remember(self, memory: QueueMemory) -> None:
        self.backlog_since = memory.backlog_since
        self.surplus_since = memory.surplus_since

    def limiter(self, queue: str, rules: RateLimitRules) -> QueueRateLimiter:
        return QueueRateLimiter(
            queue=queue,
            rules=rules,
            submit_failures=self.submit_failures,
            start_failures=self.start_failures,
            next_allowed_at=self.next_allowed_at,
            paused_reason=self.paused_reason,
            last_failure=self.last_failure,
        )

    def keep(self, limiter: QueueRateLimiter) -> None:
        self.submit_failures = limiter.submit_failures
        self.start_failures = limiter.start_failures
        self.next_allowed_at = limiter.next_allowed_at
        self.paused_reason = limiter.paused_reason
        self.last_failure = limiter.last_failure

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class FactoryState:
    """The persisted part of a factory: ``state_dir/state.json``."""

    path: Path
    pilots: dict[str, PilotRecord] = field(default_factory=dict)
    queues: dict[str, QueueRecord] = field(default_factory=dict)
    pilot_token: str | None = None
    pilot_token_expires_at: float = 0.0
    _written: str = field(default="", repr=False)

    @classmethod
    def load(cls, state_dir: Path) -> FactoryState:
        """The state in ``state_dir``, or an empty one on a first start."""
        path = state_dir / STATE_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the factory state {path}: {exc.strerror}; check the permissions "
                "of [factory] state_dir"
            ) from exc
        try:
            data = json.loads(text)
            pilots = {
                (rec := PilotRecord.from_dict(item)).key: rec for item in data.get("pilots", [])
            }
            queues = {
                name: QueueRecord.from_dict(item) for name, item in data.get("queues", {}).items()
            }
            token = data.get("pilot_token") or None
            expires = float(data.get("pilot_token_expires_at") or 0.0)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigurationError(
                f"the factory state {path} is damaged ({exc}); the pilots it lists are still "
                "in the batch system: fix the file, or move it away to start from scratch"
            ) from exc
        return cls(path, pilots, queues, token, expires)

    def save(self) -> None:
        data = {
            "format": _FORMAT,
            "pilot_token": self.pilot_token,
            "pilot_token_expires_at": self.pilot_token_expires_at,
            "queues": {name: asdict(rec) for name, rec in sorted(self.queues.items())},
            "pilots": [asdict(rec) for rec in self.pilots.values()],
        }
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        if text != self._written:  # most cycles change nothing: no rewrite, no fsync
            write_atomic(self.path, text)
            self._written = text

    def queue(self, name: str) -> QueueRecord:
        return self.queues.setdefault(name, QueueRecord())

    def add(self, record: PilotRecord) -> None:
        self.pilots[record.key] = record

    def of_queue(self, queue: str) -> list[PilotRecord]:
        return [rec for rec in self.pilots.values() if rec.queue == queue]

    def live(self, queue: str | None = None) -> list[PilotRecord]:
        return [
            rec
            for rec in self.pilots.values()
            if not rec.ended and (queue is None or rec.queue == queue)
        ]


class FactoryLockedError(ConfigurationError):
    """Another factory process holds the state directory."""

    title = "Factory already running"


class StateLock:
    """An exclusive ``flock`` on ``state_dir/factory.lock``: held by the daemon while it runs,
    and briefly by a command that edits the state of a factory that is not running."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def holder(self) -> str:
        """The pid written by the holder, for messages."""
        try:
            return self.path.read_text(encoding="utf-8").strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StateLock:
        if not self.acquire():
            raise FactoryLockedError(
                f"a factory (pid {self.holder()}) is already using {self.path.parent}; stop it "
                "first, or give this one another [factory] state_dir"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
