"""Local pilots kept alive by ``pilotwms up``, and stopping them without leaving a process.

The pilots are started through the factory's local backend (detached process groups, one
session each, per-pilot logs); their processes are found in ``/proc`` by session, plus the
descendants of those (jobs an agent started in sessions of their own are still its children).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pilotwms.factory.backends.base import BatchState, PilotScriptContext
from pilotwms.factory.backends.local import LocalBackend

__all__ = ["PILOT_MIN_LIFE_S", "LocalPilots", "processes_of", "terminate"]

#: A pilot that ends sooner than this after its start counts as failing (restart back-off).
PILOT_MIN_LIFE_S = 30.0
RESTART_DELAY_CAP_S = 60.0

Log = Callable[[str], None]


def _process_table() -> dict[int, tuple[int, int]]:
    """``pid -> (parent pid, session id)`` of every live (non-zombie) process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def processes_of(sessions: Iterable[int]) -> set[int]:
    """The processes of the pilots' sessions and their descendants (jobs an agent started in
    sessions of their own are still its children)."""
    wanted = set(sessions)
    table = _process_table()
    found = {pid for pid, (_, sid) in table.items() if sid in wanted}
    grown = True
    while grown:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found and pid not in found}
        found |= more
        grown = bool(more)
    return found


def _session_of(batch_id: str) -> int:
    return int(batch_id.partition("-")[0])


@dataclass
class _Slot:
    """One of the ``pilots`` places the supervisor keeps filled."""

    index: int
    batch_id: str | None = None
    started: float = 0.0
    failures: int = 0
    not_before: float = 0.0


@dataclass
class LocalPilots:
    """Keeps a fixed number of local pilots running and stops them all on request."""

    backend: LocalBackend
    contexts: list[PilotScriptContext]
    log: Log
    clock: Callable[[], float] = time.monotonic
    slots: list[_Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.slots = [_Slot(i) for i in range(len(self.contexts))]

    @property
    def batch_ids(self) -> list[str]:
        return [s.batch_id for s in self.slots if s.batch_id is not None]

    def keep_alive(self) -> bool:
        """Start the pilots that are missing; True when the set of pilots changed."""
        now = self.clock()
        states = self.backend.status(self.batch_ids)
        changed = False
        for slot in self.slots:
            if slot.batch_id is not None:
                state = states[slot.batch_id]
                if not state.state.ended and state.state != BatchState.UNKNOWN:
                    continue
                self._ended(slot, state.reason or state.native, now)
                changed = True
            if now < slot.not_before:
                continue
            slot.batch_id = self.backend.submit(1, self.contexts[slot.index])[0]
            slot.started = now
            changed = True
        return changed

    def _ended(self, slot: _Slot, reason: str, now: float) -> None:
        assert slot.batch_id is not None
        ended, slot.batch_id = slot.batch_id, None
        if now - slot.started >= PILOT_MIN_LIFE_S:
            slot.failures = 0
            self.log(
                f"pilot {slot.index + 1} ({ended}) ended ({reason or 'idle'}); starting another"
            )
            return
        slot.failures += 1
        delay = min(RESTART_DELAY_CAP_S, 2.0 ** (slot.failures - 1))
        slot.not_before = now + delay
        err = self.backend.log_paths(ended, self.contexts[slot.index].log_dir).stderr
        self.log(
            f"pilot {slot.index + 1} ({ended}) ended {now - slot.started:.0f}s after its start "
            f"({reason or 'no reason given'}); next one in {delay:.0f}s. Its log: {err}"
        )

    def stop(self, grace_s: float, hurry: threading.Event) -> None:
        """SIGTERM every pilot, SIGKILL what is left after ``grace_s`` (or at once when
        ``hurry`` is set), and return once none of their processes is left."""
        ids = self.batch_ids
        for slot in self.slots:
            slot.batch_id = None
        terminate(self.backend, ids, grace_s, hurry)


def terminate(
    backend: LocalBackend, ids: list[str], grace_s: float, hurry: threading.Event | None = None
) -> None:
    """Stop the local pilots ``ids`` (SIGTERM, then SIGKILL after ``grace_s``) and wait until
    none of their processes is left."""
    if not ids:
        return
    sessions = [_session_of(i) for i in ids]
    backend.cancel(ids)  # SIGTERM to each pilot's process group
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not (hurry is not None and hurry.is_set()):
        backend.status(ids)  # collects the exit status of our own children (no zombies)
        if not processes_of(sessions):
            return
        time.sleep(0.1)
    for _ in range(50):
        left = processes_of(sessions)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        backend.status(ids)
        time.sleep(0.1)
    backend.status(ids)
