"""The embedded, all-in-one service behind ``pilotwms up``: a server and its local pilots.

Process model. The server runs in this process, on uvicorn in a thread, so it cannot outlive
``up`` and there is no second process to find and stop. The main thread owns the signals and a
supervising loop that keeps ``pilots`` local pilots alive through the factory's local backend
(``LocalBackend``, the code the pilot factory will use later): each pilot is a detached process
group with its own work directory (an agent locks its work directory, so pilots cannot share
one) and per-pilot logs in ``DATA_DIR/pilots``. A pilot that ends is started again; one that
keeps dying soon after its start is restarted with a growing delay instead of in a tight loop.

Shutdown (Ctrl-C, SIGTERM or SIGHUP) runs in a fixed order, because a pilot needs the server to
hand its final reports in and deregister: pilots get SIGTERM (they drain: stop asking for work,
give running jobs a short grace, report, deregister), whatever is still alive in their sessions
after ``grace`` seconds gets SIGKILL, and only then the server stops. A second Ctrl-C skips the
grace. The data directory keeps ``up.json`` (this process, its URL and pilot ids) while ``up``
runs; a later start finds the pilots of an ``up`` that was killed outright and stops them.

First start. An admin user and two tokens are created: an admin token for the client
configuration and a pilot token for the pilots. They are kept in ``DATA_DIR/credentials.json``
(mode 0600) and reused by later starts as long as they still authenticate.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pilotwms.core.settings import ServerSettings
from pilotwms.embedded.credentials import (
    ADMIN_USER,
    CREDENTIALS_FILE,
    Credentials,
    ensure_credentials,
    write_client_config,
    write_private,
)
from pilotwms.embedded.local_pilots import LocalPilots, Log, processes_of, terminate
from pilotwms.embedded.server import EmbeddedError, EmbeddedServer
from pilotwms.factory.backends.base import BatchState, PilotScriptContext
from pilotwms.factory.backends.local import LocalBackend

__all__ = [
    "ADMIN_USER",
    "CREDENTIALS_FILE",
    "STATE_FILE",
    "Credentials",
    "EmbeddedError",
    "EmbeddedOptions",
    "ensure_credentials",
    "processes_of",
    "run",
    "terminate",
    "write_client_config",
]

STATE_FILE = "up.json"
LOCK_FILE = "up.lock"
#: An idle pilot exits after this long and is started again; a pilot orphaned by an ``up``
#: killed with SIGKILL therefore ends by itself once it finds no server for this long.
PILOT_IDLE_S = 600
SUPERVISE_PERIOD_S = 0.5


@dataclass(frozen=True)
class EmbeddedOptions:
    """What ``pilotwms up`` was asked for."""

    settings: ServerSettings
    pilots: int = 2
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


def _pilot_contexts(
    options: EmbeddedOptions, url: str, token: str, pilots_dir: Path
) -> list[PilotScriptContext]:
    grace = options.grace_s
    return [
        PilotScriptContext(
            server_url=url,
            token=token,
            queue="local",
            site=socket.gethostname() or "localhost",
            wait_term=PILOT_IDLE_S,
            max_runtime=None,
            log_dir=pilots_dir / "logs",
            cores=options.cores,
            memory_mb=options.memory_mb,
            tags=options.tags,
            # Each pilot its own work directory; jobs get part of the grace, so that the agent
            # can still kill them, report and deregister before SIGKILL.
            extra_args=(
                "--work-dir",
                str(pilots_dir / f"work-{i + 1}"),
                "--sigterm-grace",
                f"{max(0.0, grace / 3):g}",
                "--cancel-grace",
                f"{min(5.0, max(0.0, grace / 6)):g}",
            ),
        )
        for i in range(options.pilots)
    ]


def _stop_leftovers(data_dir: Path, backend: LocalBackend, log: Log) -> None:
    """Pilots of an earlier ``up`` that did not get to stop them (it was killed outright)."""
    ids = [i for i in _read_state(data_dir).get("pilots", []) if isinstance(i, str)]
    states = backend.status(ids)
    alive = [i for i, s in states.items() if s.state == BatchState.RUNNING]
    if alive:
        log(f"stopping {len(alive)} pilot(s) left by an earlier pilotwms up")
        terminate(backend, alive, 5.0)


def run(options: EmbeddedOptions, log: Log) -> int:
    """Run the service until a signal; returns the exit code. Call from the main thread."""
    from pilotwms.server.app import prepare_database

    settings = options.settings
    data_dir = settings.data_dir
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)
    lock = _lock_data_dir(data_dir)
    pilots_dir = data_dir / "pilots"
    backend = LocalBackend(log_dir=pilots_dir / "logs")
    state_path = data_dir / STATE_FILE
    server: EmbeddedServer | None = None
    pilots: LocalPilots | None = None
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
            pilots = LocalPilots(
                backend, _pilot_contexts(options, url, credentials.pilot_token, pilots_dir), log
            )
            pilots.keep_alive()
            state["pilots"] = pilots.batch_ids
            write_private(state_path, json.dumps(state, indent=2) + "\n")
            _announce(options, url, written, data_dir, log)
            while not stop.requested.wait(SUPERVISE_PERIOD_S):
                if not server.alive:
                    log("the server stopped unexpectedly; shutting down")
                    return 1
                if pilots.keep_alive():
                    state["pilots"] = pilots.batch_ids
                    write_private(state_path, json.dumps(state, indent=2) + "\n")
            log("stopping: pilots first (SIGTERM, then SIGKILL after the grace), then the server")
            return 0
        finally:
            if pilots is not None:
                pilots.stop(options.grace_s, stop.hurry)
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
        f"  {options.pilots} local pilot(s), {options.cores} core(s) each, tags {tags}; "
        f"logs in {data_dir / 'pilots' / 'logs'}",
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
