"""Local pilots: detached process groups on the factory's own machine (``pilotwms up``).

Each pilot is a small ``sh`` wrapper in its own session (so cancel reaches the agent and
everything it started with one ``killpg``) that runs the agent with its output in per-pilot log
files and, when the agent ends, records the exit code next to them. The batch id is
``<pid>-<start time>``: the start time (clock ticks since boot, from ``/proc/<pid>/stat``) tells a
live pilot from an unrelated process that later got the same pid.

The wrapper waits for its id on stdin before it starts, so every file can be named after the id
from the first byte on, and a pilot whose factory died before telling it its id simply exits.
A pilot here never queues: it is RUNNING from the moment ``submit`` returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
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

__all__ = ["WRAPPER", "LocalBackend"]

#: $1: log folder; "$@" after shift: the agent's command line. The first stdin line is the id.
WRAPPER = r"""
IFS= read -r id || exit 0
[ -n "$id" ] || exit 0
dir=$1; shift
exec </dev/null >"$dir/pilot-$id.out" 2>"$dir/pilot-$id.err"
PILOTWMS_BATCH_ID=$id; export PILOTWMS_BATCH_ID
"$@"
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


class LocalBackend(Backend):
    name = "local"

    def __init__(self, runner: CommandRunner | None = None, log_dir: Path | None = None) -> None:
        super().__init__(runner)
        #: where status() and cancel() look for the pilots' files (set by submit otherwise)
        self.log_dir = log_dir

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
        """The agent command: the installed package with this interpreter unless told otherwise."""
        if ctx.agent is None and ctx.python == "python3":
            return [sys.executable, *agent_command(ctx)[1:]]
        return agent_command(ctx)

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
        if Path(f"{files}.cancelled").exists():
            if process_start_time(pid) == start:
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

    def cancel(self, ids: Sequence[str]) -> None:
        for batch_id in ids:
            pid, start = _split(batch_id)
            if pid is None or self.log_dir is None:
                continue
            if Path(f"{self.log_dir}/pilot-{batch_id}.exit").exists():
                continue  # already ended
            Path(f"{self.log_dir}/pilot-{batch_id}.cancelled").touch()
            if process_start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            _reap(pid)

    def log_paths(self, batch_id: str, log_dir: Path) -> PilotLogs:
        return PilotLogs(log_dir / f"pilot-{batch_id}.out", log_dir / f"pilot-{batch_id}.err")


def _split(batch_id: str) -> tuple[int | None, str]:
    pid, _, start = batch_id.partition("-")
    return (int(pid), start) if pid.isdigit() and start.isdigit() else (None, "")


def _reap(pid: int) -> None:
    """Collect the exit status of a pilot this process started, so it does not linger as a
    zombie (which ``/proc`` would still show as a process with its start time)."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]
