"""Local pilots: detached process groups on the factory's own machine (``pilotwms up``).

Each pilot is a small ``sh`` wrapper in its own session (so cancel reaches the agent and
everything it started with one ``killpg``) that runs the agent with its output in per-pilot log
files and, when the agent ends, records the exit code next to them. The batch id is
``<pid>-<start time>``: the start time (clock ticks since boot, from ``/proc/<pid>/stat``) tells a
live pilot from an unrelated process that later got the same pid.

The wrapper waits for its id on stdin before it starts, so every file can be named after the id
from the first byte on, and a pilot whose factory died before telling it its id simply exits.
A pilot here never queues: it is RUNNING from the moment ``submit`` returns.

The wrapper starts the agent as its child and then ignores SIGTERM itself, so ``cancel`` (one
SIGTERM to the process group) reaches the agent exactly once -- the agent drains: its running
jobs get their grace and are reported back for a shallow retry -- while the wrapper stays to
record the agent's exit code. A pilot stays "cancelling" (RUNNING) as long as any process of its
session or their descendants (jobs an agent started in sessions of their own) is alive; after
``kill_grace_s`` they all get SIGKILL, so a stuck agent cannot outlive its cancellation.
Each pilot gets its own work directory (``work-<id>`` under the log folder, or under
``PILOTWMS_WORK_DIR`` when the queue's environment sets one): an agent locks its work directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pilotwms.factory.backends.base import (
    Backend,
    BatchState,
    CommandRunner,
    PilotBatchState,
    PilotLogs,
    PilotScriptContext,
    SubmitError,
    agent_command,
    agent_environment,
    unknown,
)

__all__ = ["WRAPPER", "LocalBackend", "process_start_time", "processes_of"]

#: $1: log folder; "$@" after shift: the agent's command line. The first stdin line is the id.
WRAPPER = r"""
IFS= read -r id || exit 0
[ -n "$id" ] || exit 0
dir=$1; shift
exec </dev/null >"$dir/pilot-$id.out" 2>"$dir/pilot-$id.err"
PILOTWMS_BATCH_ID=$id; export PILOTWMS_BATCH_ID
PILOTWMS_WORK_DIR="${PILOTWMS_WORK_DIR:-$dir}/work-$id"; export PILOTWMS_WORK_DIR
"$@" &
agent=$!
trap '' TERM INT HUP
echo "$agent" >"$dir/pilot-$id.pid"
wait "$agent"
rc=$?
echo "$rc" >"$dir/pilot-$id.exit.tmp" && mv "$dir/pilot-$id.exit.tmp" "$dir/pilot-$id.exit"
exit "$rc"
"""


#: Pilots started by this process: kept so that their exit status is collected (no zombies) and
#: so that Python does not warn about children still running when a backend object goes away.
_CHILDREN: dict[int, subprocess.Popen[str]] = {}


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return fields[19]


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
    """The live processes of the pilots' sessions and their descendants (jobs an agent started
    in sessions of their own are still its children)."""
    wanted = set(sessions)
    if not wanted:
        return set()
    table = _process_table()
    found = {pid for pid, (_, sid) in table.items() if sid in wanted}
    grown = True
    while grown:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found and pid not in found}
        found |= more
        grown = bool(more)
    return found


def _kill(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class LocalBackend(Backend):
    name = "local"

    #: seconds a cancelled pilot gets to drain before what is left of it gets SIGKILL
    DEFAULT_KILL_GRACE_S = 90.0

    def __init__(
        self,
        runner: CommandRunner | None = None,
        log_dir: Path | None = None,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(runner)
        #: where status() and cancel() look for the pilots' files (set by submit otherwise)
        self.log_dir = log_dir
        self.kill_grace_s = kill_grace_s
        self.clock = clock

    def submit(self, n: int, ctx: PilotScriptContext) -> list[str]:
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = ctx.log_dir
        # The agent reads PILOTWMS_* variables as settings: none of the factory's may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
        env.update(ctx.environment)
        env.update(agent_environment(ctx))
        argv = self.command(ctx)
        ids: list[str] = []
        for _ in range(n):
            try:
                ids.append(self._spawn(argv, ctx.log_dir, env))
            except OSError as exc:
                raise SubmitError(self.name, f"cannot start a pilot: {exc}", ids) from exc
        return ids

    @staticmethod
    def command(ctx: PilotScriptContext) -> list[str]:
        """The agent command, run by this very interpreter unless the queue names another."""
        argv = agent_command(ctx)
        if ctx.python == "python3":
            argv[0] = sys.executable
        return argv

    def _spawn(self, argv: Sequence[str], log_dir: Path, env: dict[str, str]) -> str:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", WRAPPER, "pilotwms-pilot", str(log_dir), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=log_dir,
            env=env,
            start_new_session=True,
            text=True,
        )
        _CHILDREN[proc.pid] = proc
        start = process_start_time(proc.pid)
        batch_id = f"{proc.pid}-{start or 0}"
        # The log files exist from now on, so a pilot killed before its wrapper got going is
        # still recognised as ours (and reported failed) rather than unknown.
        for suffix in (".out", ".err"):
            (log_dir / f"pilot-{batch_id}{suffix}").touch()
        assert proc.stdin is not None
        try:
            proc.stdin.write(batch_id + "\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        return batch_id

    def status(self, ids: Sequence[str]) -> dict[str, PilotBatchState]:
        for pid in list(_CHILDREN):
            _reap(pid)
        return {batch_id: self._status(batch_id) for batch_id in dict.fromkeys(ids)}

    def _status(self, batch_id: str) -> PilotBatchState:
        pid, start = _split(batch_id)
        if pid is None or self.log_dir is None:
            return unknown(reason=f"{batch_id!r} is not a local pilot id")
        _reap(pid)
        files = self.log_dir / f"pilot-{batch_id}"
        cancelled = Path(f"{files}.cancelled")
        if cancelled.exists():
            if self._still_cancelling(pid, start, cancelled):
                return PilotBatchState(BatchState.RUNNING, "cancelling")
            return PilotBatchState(BatchState.CANCELLED, "cancelled", "cancelled by the factory")
        exit_file = Path(f"{files}.exit")
        if exit_file.exists():
            try:
                code = int(exit_file.read_text().strip())
            except ValueError:
                code = -1
            if code == 0:
                return PilotBatchState(BatchState.FINISHED, "exited", "", 0)
            reason = f"killed by signal {code - 128}" if code > 128 else f"exit code {code}"
            return PilotBatchState(BatchState.FAILED, "exited", reason, code)
        if process_start_time(pid) == start:
            return PilotBatchState(BatchState.RUNNING, "running")
        if not Path(f"{files}.out").exists():
            return unknown(reason=f"no local pilot {batch_id} in {self.log_dir}")
        return PilotBatchState(
            BatchState.FAILED, "vanished", "the pilot's process ended without an exit code"
        )

    def _still_cancelling(self, pid: int, start: str, marker: Path) -> bool:
        """Whether anything of a cancelled pilot is alive; SIGKILL for it once the grace is up.

        The wrapper's own pid is its session id; while the wrapper lives its start time proves
        the session is the pilot's. Once the wrapper is gone, what is left in that session (an
        agent that lost its wrapper) is still the pilot's: a session id is not reused while any
        process of the session lives.
        """
        wrapper_alive = process_start_time(pid) == start
        left = (
            processes_of([pid]) if wrapper_alive or not Path(f"{marker}.done").exists() else set()
        )
        if not left:
            with contextlib.suppress(OSError):
                Path(f"{marker}.done").touch()
            return False
        try:
            since = float(marker.read_text().strip() or 0.0)
        except (OSError, ValueError):
            since = 0.0
        if self.clock() - since >= self.kill_grace_s:
            _kill(left, signal.SIGKILL)
        return True

    def cancel(self, ids: Sequence[str]) -> None:
        """SIGTERM to each pilot's process group (the agent drains); see ``kill_grace_s``."""
        for batch_id in ids:
            pid, start = _split(batch_id)
            if pid is None or self.log_dir is None:
                continue
            files = f"{self.log_dir}/pilot-{batch_id}"
            if Path(f"{files}.exit").exists() or Path(f"{files}.cancelled").exists():
                continue  # already ended, or already cancelled (its clock keeps running)
            Path(f"{files}.cancelled").write_text(f"{self.clock()}\n")
            if process_start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            _reap(pid)

    def terminate(
        self, ids: Sequence[str], grace_s: float, hurry: threading.Event | None = None
    ) -> None:
        """Cancel ``ids`` and wait until none of their processes is left: SIGTERM, then SIGKILL
        after ``grace_s`` (at once when ``hurry`` is set). For a clean shutdown of ``up``."""
        if not ids:
            return
        sessions = [pid for pid, _ in map(_split, ids) if pid is not None]
        self.cancel(ids)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not (hurry is not None and hurry.is_set()):
            self.status(ids)  # collects the exit status of our own children (no zombies)
            if not processes_of(sessions):
                break
            time.sleep(0.1)
        for _ in range(50):
            left = processes_of(sessions)
            if not left:
                break
            _kill(left, signal.SIGKILL)
            self.status(ids)
            time.sleep(0.1)
        self.status(ids)

    def log_paths(self, batch_id: str, log_dir: Path) -> PilotLogs:
        return PilotLogs(log_dir / f"pilot-{batch_id}.out", log_dir / f"pilot-{batch_id}.err")

    def forget(self, batch_id: str, log_dir: Path) -> None:
        """Remove an ended pilot's files and its work directory."""
        for suffix in (".out", ".err", ".exit", ".pid", ".cancelled", ".cancelled.done"):
            with contextlib.suppress(OSError):
                (log_dir / f"pilot-{batch_id}{suffix}").unlink()
        work = log_dir / f"work-{batch_id}"
        if work.is_dir():
            shutil.rmtree(work, ignore_errors=True)


def _split(batch_id: str) -> tuple[int | None, str]:
    pid, _, start = batch_id.partition("-")
    return (int(pid), start) if pid.isdigit() and start.isdigit() else (None, "")


def _reap(pid: int) -> None:
    """Collect the exit status of a pilot this process started, so it does not linger as a
    zombie (which ``/proc`` would still show as a process with its start time)."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]
