"""The embedded, all-in-one service behind ``pilotwms up``: a server and its pilot factory.

Process model. The server runs in this process, on uvicorn in a thread, so it cannot outlive
``up`` and there is no second process to find and stop. The pilot factory runs in a second
thread with one queue, ``local``, on the factory's local backend: ``pilots`` keep-warm pilots
(``sched_min``, started without an idle timeout, replaced when they end) and up to
``max_pilots`` in all when the waiting jobs need more. Each pilot is a detached process group
with its own work directory and per-pilot logs in ``DATA_DIR/pilots/queues/local``; the factory
state (``DATA_DIR/pilots/state.json``) and ``pilotwms factory status``-style report live beside
them. A pilot that keeps dying at start is retried with a growing delay (the factory's rate
limiter), not in a tight loop. The main thread owns the signals.

Shutdown (Ctrl-C, SIGTERM or SIGHUP) runs in a fixed order, because a pilot needs the server to
hand its final reports in and deregister: the factory stops, pilots get SIGTERM (they drain: stop
asking for work, give running jobs a short grace, report, deregister), whatever is still alive in
their sessions after ``grace`` seconds gets SIGKILL, and only then the server stops. A second
Ctrl-C skips the grace. The data directory keeps ``up.json`` (this process, its URL and pilot
ids) while ``up`` runs; a later start finds the pilots of an ``up`` that was killed outright and
stops them.

First start. An admin user and two tokens are created: an admin token for the client
configuration (the factory uses it too) and a pilot token for the pilots. They are kept in
``DATA_DIR/credentials.json`` (mode 0600) and reused by later starts as long as they still
authenticate.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pilotwms.core.settings import ServerSettings
from pilotwms.embedded.credentials import (
    ADMIN_USER,
    CREDENTIALS_FILE,
    Credentials,
    ensure_credentials,
    write_client_config,
    write_private,
)
from pilotwms.embedded.server import EmbeddedError, EmbeddedServer
from pilotwms.factory.backends.base import BatchState
from pilotwms.factory.backends.local import LocalBackend, processes_of

__all__ = [
    "ADMIN_USER",
    "CREDENTIALS_FILE",
    "STATE_FILE",
    "Credentials",
    "EmbeddedError",
    "EmbeddedOptions",
    "ensure_credentials",
    "pilot_log_dir",
    "processes_of",
    "run",
    "write_client_config",
]

if TYPE_CHECKING:
    from pilotwms.factory.config import FactoryConfig
    from pilotwms.factory.daemon import Factory

Log = Callable[[str], None]

STATE_FILE = "up.json"
LOCK_FILE = "up.lock"
#: Pilots started beyond the keep-warm ones exit after this long without a job.
PILOT_IDLE_S = 120
SUPERVISE_PERIOD_S = 0.5
#: The factory's cycle period: short, so that a job submitted to ``up`` finds a pilot soon.
FACTORY_POLL_S = 1.0
QUEUE = "local"


@dataclass(frozen=True)
class EmbeddedOptions:
    """What ``pilotwms up`` was asked for."""

    settings: ServerSettings
    pilots: int = 2
    #: most pilots at once (keep-warm ones included); None: as many as ``pilots``
    max_pilots: int | None = None
    cores: int = 2
    memory_mb: int = 2000
    tags: tuple[str, ...] = ("pilotwms-demo", "python3")
    #: where to write the client configuration; None: write none
    client_config: Path | None = None
    #: seconds between a pilot's SIGTERM and SIGKILL at shutdown
    grace_s: float = 30.0


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """One ``up`` per data directory: two would share one SQLite file and one set of pilots."""
    handle = open(data_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held while up runs
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        state = _read_state(data_dir)
        raise EmbeddedError(
            f"another pilotwms up (pid {state.get('pid', '?')}) is using {data_dir}; stop it "
            "first or give another --data-dir"
        ) from None
    return handle


def _read_state(data_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


class _Stop:
    """Signal handlers of the main thread: the first signal stops, the next one hurries."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested.is_set():
            self.hurry.set()
        self.requested.set()


def pilot_log_dir(data_dir: Path) -> Path:
    """Where the local pilots of ``up`` on ``data_dir`` keep their logs and markers."""
    return data_dir / "pilots" / "queues" / QUEUE


def _most_pilots(options: EmbeddedOptions) -> int:
    return max(options.pilots, options.max_pilots or options.pilots)


def factory_config(options: EmbeddedOptions, url: str, data_dir: Path) -> FactoryConfig:
    """The factory configuration of ``up``: one local queue on this machine."""
    from pilotwms.factory.config import parse_factory_config

    grace = options.grace_s
    queue = {
        "backend": "local",
        "sched_min": options.pilots,
        "sched_max": _most_pilots(options),
        "poll": FACTORY_POLL_S,
        "wait_new": 5.0,
        "wait_term": PILOT_IDLE_S,
        "ad": {
            "cores": options.cores,
            "memory_mb": options.memory_mb,
            "site": socket.gethostname() or "localhost",
            "tags": list(options.tags),
            # Local pilots have no batch walltime.
            "walltime_s": 10 * 365 * 86400,
        },
        "options": {
            "environment": {
                # Jobs get part of the shutdown grace, so that the agent can still kill them,
                # report and deregister before SIGKILL.
                "PILOTWMS_SIGTERM_GRACE": f"{max(0.0, grace / 3):g}",
                "PILOTWMS_CANCEL_GRACE": f"{min(5.0, max(0.0, grace / 6)):g}",
            }
        },
        # Nobody watches a laptop's factory: back off, but never pause.
        "rate_limit": {"backoff_s": [0, 2, 5, 15, 30, 60], "pause_after_start_failures": 1000},
    }
    data = {
        "factory": {"server_url": url, "state_dir": str(data_dir / "pilots"), "name": "up"},
        "queues": {QUEUE: queue},
    }
    return parse_factory_config(data, source="pilotwms up")


def _stop_leftovers(data_dir: Path, backend: LocalBackend, log: Log) -> None:
    """Pilots of an earlier ``up`` that did not get to stop them (it was killed outright)."""
    ids = [i for i in _read_state(data_dir).get("pilots", []) if isinstance(i, str)]
    states = backend.status(ids)
    alive = [i for i, s in states.items() if s.state == BatchState.RUNNING]
    if alive:
        log(f"stopping {len(alive)} pilot(s) left by an earlier pilotwms up")
        backend.terminate(alive, 5.0)


class _Pilots:
    """The embedded factory in its thread, and the pilot ids ``up.json`` lists."""

    def __init__(self, factory: Factory, state: dict[str, Any], state_path: Path, log: Log) -> None:
        self.factory = factory
        self.state = state
        self.state_path = state_path
        self.log = log
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=factory.serve, args=(self.stop,), name="factory", daemon=True
        )
        self._lock = threading.Lock()
        self._last_error: str | None = None
        factory.on_cycle = self._after_cycle

    def _after_cycle(self, factory: Factory) -> None:
        ids = sorted(r.batch_id for r in factory.state.live(QUEUE))
        with self._lock:
            before = list(self.state.get("pilots", []))
            if ids != before:
                self.state["pilots"] = ids
                write_private(self.state_path, json.dumps(self.state, indent=2) + "\n")
        for batch_id in before:
            record = factory.state.pilots.get(f"{QUEUE}/{batch_id}")
            if batch_id not in ids and record is not None and not record.cancelled:
                why = record.reason or record.native or record.state
                err = factory.settings.queue_dir(QUEUE) / f"pilot-{batch_id}.err"
                self.log(f"pilot {batch_id} ended ({why}); its log: {err}")
        error = factory.queues[QUEUE].last_error
        if error and error != self._last_error:
            self.log(f"pilots: {error}")
        self._last_error = error

    def start(self) -> None:
        self.factory.publish_queues()
        self.factory.cycle()  # the keep-warm pilots, before up.json says where they are
        self.thread.start()

    def shutdown(self, grace_s: float, hurry: threading.Event) -> None:
        """Stop the factory, then its pilots: SIGTERM, SIGKILL after ``grace_s``."""
        self.stop.set()
        self.thread.join(60)
        live = [r.batch_id for r in self.factory.state.live(QUEUE)]
        self.factory.cancel_pilots(QUEUE, "pilotwms up stopped")
        backend = self.factory.queues[QUEUE].backend
        if isinstance(backend, LocalBackend):
            backend.terminate(live, grace_s, hurry)


def run(options: EmbeddedOptions, log: Log) -> int:
    """Run the service until a signal; returns the exit code. Call from the main thread."""
    from pilotwms.factory.daemon import Factory
    from pilotwms.factory.server_api import ServerApi
    from pilotwms.server.app import prepare_database

    settings = options.settings
    data_dir = settings.data_dir
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)
    lock = _lock_data_dir(data_dir)
    backend = LocalBackend(log_dir=pilot_log_dir(data_dir))
    state_path = data_dir / STATE_FILE
    server: EmbeddedServer | None = None
    pilots: _Pilots | None = None
    api: ServerApi | None = None
    with _Stop() as stop:
        try:
            _stop_leftovers(data_dir, backend, log)
            db = prepare_database(settings)
            try:
                credentials = ensure_credentials(settings, db)
            finally:
                db.dispose()
            server = EmbeddedServer(settings, settings.log_level)
            server.start(stop.requested)
            if stop.requested.is_set():
                return 130
            url = server.url
            state: dict[str, Any] = {"pid": os.getpid(), "url": url, "pilots": []}
            written = None
            if options.client_config is not None:
                backup = write_client_config(
                    options.client_config, url, credentials.admin_token, data_dir
                )
                written = str(options.client_config)
                state["client_config"] = written
                if backup is not None:
                    log(f"the previous client configuration is kept as {backup}")
            # The factory talks to this very process over loopback: no certificate to check.
            api = ServerApi(url, credentials.admin_token, verify=False)
            factory = Factory(
                factory_config(options, url, data_dir),
                api,
                pilot_token=credentials.pilot_token,
                backends={QUEUE: backend},
            )
            pilots = _Pilots(factory, state, state_path, log)
            pilots.start()
            write_private(state_path, json.dumps(state, indent=2) + "\n")
            _announce(options, url, written, data_dir, log)
            while not stop.requested.wait(SUPERVISE_PERIOD_S):
                if not server.alive:
                    log("the server stopped unexpectedly; shutting down")
                    return 1
            log("stopping: pilots first (SIGTERM, then SIGKILL after the grace), then the server")
            return 0
        finally:
            if pilots is not None:
                pilots.shutdown(options.grace_s, stop.hurry)
            if api is not None:
                api.close()
            if server is not None:
                server.stop()
            with contextlib.suppress(OSError):
                state_path.unlink()
            lock.close()
            if server is not None:
                log("pilotwms up stopped")


def _announce(
    options: EmbeddedOptions, url: str, config: str | None, data_dir: Path, log: Log
) -> None:
    tags = ",".join(options.tags) or "none"
    lines = [
        f"pilotwms up: server {url}/api/v1 (data in {data_dir})",
        f"  {options.pilots} local pilot(s) kept warm (at most {_most_pilots(options)}), "
        f"{options.cores} core(s) each, tags {tags}; logs in {pilot_log_dir(data_dir)}",
        f"  admin token in {data_dir / CREDENTIALS_FILE}",
    ]
    if config is not None:
        lines.append(f"  client configuration written to {config}: try")
        lines.append("    pilotwms submit examples/hello.jdl --wait")
    else:
        lines.append(f"  no client configuration written; use PILOTWMS_URL={url} and the token")
    lines.append(f"  stop with Ctrl-C (or kill -TERM {os.getpid()})")
    for line in lines:
        log(line)
