"""The processes of one job step: found through ``/proc`` by session, measured and killed.

Each step runs with ``start_new_session=True``, so it leads a new session and process group whose
ids equal its pid. A job may create process groups of its own (a shell with job control does),
but it stays in the session unless it calls ``setsid`` itself; so usage is summed, and signals
sent, over the whole session as well as the process group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclasses.dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the agent uses."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    cpu_ticks: int
    rss_pages: int


def parse_stat(text: str) -> Optional[ProcStat]:
    """Parse one ``/proc/<pid>/stat`` line; the command name may contain spaces and ')'."""
    head, sep, rest = text.rpartition(")")
    if not sep:
        return None
    fields = rest.split()
    try:
        pid = int(head.split("(", 1)[0])
        utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
        return ProcStat(
            pid=pid,
            state=fields[0],
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            cpu_ticks=utime + stime + cutime + cstime,
            rss_pages=int(fields[21]),
        )
    except (IndexError, ValueError):
        return None


def scan(proc: Path = Path("/proc")) -> List[ProcStat]:
    """Every live process (zombies excluded).

    Plain ``os`` calls instead of ``pathlib``: this runs after every job step, and on a busy
    node it reads hundreds of files, so its cost is part of every job's overhead.
    """
    found: List[ProcStat] = []
    base = str(proc)
    try:
        names = os.listdir(base)
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{base}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        stat = parse_stat(data.decode("utf-8", "replace"))
        if stat and stat.state != "Z":
            found.append(stat)
    return found


def session_members(session: int, proc: Path = Path("/proc")) -> List[ProcStat]:
    """Live processes of ``session`` or of process group ``session``, from a fresh scan."""
    return [s for s in scan(proc) if session in (s.session, s.pgrp)]


class ProcessTable:
    """A ``/proc`` scan shared by all jobs of a pilot for ``max_age`` seconds.

    Measuring usage scans every process of the node; with many jobs on a large node, one scan
    per sampling period instead of one per job keeps the agent's own CPU use small. Killing
    always uses a fresh scan (:func:`signal_session`).
    """

    def __init__(
        self,
        proc: Path = Path("/proc"),
        max_age: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.proc = proc
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._taken = float("-inf")
        self._by_id: Dict[int, List[ProcStat]] = {}

    def members(self, session: int) -> List[ProcStat]:
        """Processes of ``session`` (or process group ``session``) as of the last scan."""
        with self._lock:
            now = self.clock()
            if now - self._taken > self.max_age:
                by_id: Dict[int, List[ProcStat]] = {}
                for stat in scan(self.proc):
                    by_id.setdefault(stat.session, []).append(stat)
                    if stat.pgrp != stat.session:
                        by_id.setdefault(stat.pgrp, []).append(stat)
                self._by_id = by_id
                self._taken = now
            return list(self._by_id.get(session, []))


@dataclasses.dataclass(frozen=True)
class Usage:
    """Summed usage of a job step's processes at one moment."""

    rss_mb: float
    cpu_s: float
    pids: int


def usage(members: Iterable[ProcStat]) -> Usage:
    """Sum RSS and CPU time over ``members``."""
    rss = cpu = count = 0
    for member in members:
        rss += member.rss_pages
        cpu += member.cpu_ticks
        count += 1
    return Usage(rss_mb=rss * PAGE_SIZE / (1 << 20), cpu_s=cpu / CLOCK_TICKS, pids=count)


def signal_session(session: int, sig: int, proc: Path = Path("/proc")) -> int:
    """Send ``sig`` to the process group and every member of the session; returns how many
    processes were signalled individually."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, sig)
    sent = 0
    seen: Dict[int, bool] = {}
    for member in session_members(session, proc):
        if member.pid in seen or member.pid == os.getpid():
            continue
        seen[member.pid] = True
        try:
            os.kill(member.pid, sig)
            sent += 1
        except (ProcessLookupError, PermissionError):
            pass
    return sent


def kill_session(session: int, proc: Path = Path("/proc")) -> None:
    """SIGKILL everything left of a session (stragglers a finished step left behind)."""
    signal_session(session, signal.SIGKILL, proc)
