"""Slurm: ``sbatch --parsable``, ``squeue``, ``scancel``, and ``sacct`` for jobs squeue forgot.

Each pilot is one ``sbatch`` of the same script read from stdin (no job arrays: per-pilot ids
keep ``status`` and ``cancel`` simple, and the factory's rate limit bounds the number of calls).
``squeue -t all`` still shows ended jobs for ``MinJobAge`` seconds; after that ``sacct`` is asked,
with ``sacct -c`` (the job-completion log) where the cluster runs no accounting database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pilotwms.factory.backends.base import (
    Backend,
    BackendError,
    BatchState,
    PilotBatchState,
    PilotLogs,
    PilotScriptContext,
    SubmitError,
    render_pilot_body,
    unknown,
    walltime_hms,
)

__all__ = ["SLURM_STATES", "SlurmBackend", "render_slurm_script"]

#: ``sbatch --parsable`` prints ``jobid`` or ``jobid;cluster``.
JOB_ID = re.compile(r"^(?P<id>\d+)(?:;(?P<cluster>\S+))?$")

#: Slurm job states (squeue %T, sacct State) -> ours. From the squeue(1) "JOB STATE CODES".
SLURM_STATES: dict[str, BatchState] = {
    "PENDING": BatchState.QUEUED,
    "CONFIGURING": BatchState.QUEUED,
    "REQUEUED": BatchState.QUEUED,
    "REQUEUE_FED": BatchState.QUEUED,
    "REQUEUE_HOLD": BatchState.QUEUED,
    "RESV_DEL_HOLD": BatchState.QUEUED,
    "RUNNING": BatchState.RUNNING,
    "COMPLETING": BatchState.RUNNING,
    "RESIZING": BatchState.RUNNING,
    "SIGNALING": BatchState.RUNNING,
    "STAGE_OUT": BatchState.RUNNING,
    "SUSPENDED": BatchState.RUNNING,
    "STOPPED": BatchState.RUNNING,
    "COMPLETED": BatchState.FINISHED,
    "CANCELLED": BatchState.CANCELLED,
    "REVOKED": BatchState.CANCELLED,
    "FAILED": BatchState.FAILED,
    "TIMEOUT": BatchState.FAILED,
    "NODE_FAIL": BatchState.FAILED,
    "PREEMPTED": BatchState.FAILED,
    "BOOT_FAIL": BatchState.FAILED,
    "DEADLINE": BatchState.FAILED,
    "OUT_OF_MEMORY": BatchState.FAILED,
    "SPECIAL_EXIT": BatchState.FAILED,
}


def render_slurm_script(ctx: PilotScriptContext) -> str:
    """The batch script of one pilot: ``#SBATCH`` header, then the common pilot body."""
    minutes = max(1, (ctx.walltime_s + 59) // 60)
    header = [
        "#!/bin/sh",
        f"#SBATCH --job-name=pilotwms-{ctx.queue}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={ctx.cores}",
        f"#SBATCH --mem={ctx.memory_mb}M",
        f"#SBATCH --time={walltime_hms(minutes * 60)}",
        f"#SBATCH --output={ctx.log_dir}/pilot-%j.out",
        f"#SBATCH --error={ctx.log_dir}/pilot-%j.err",
    ]
    if ctx.gpus:
        header.append(f"#SBATCH --gres=gpu:{ctx.gpus}")
    if ctx.partition:
        header.append(f"#SBATCH --partition={ctx.partition}")
    if ctx.account:
        header.append(f"#SBATCH --account={ctx.account}")
    header += [f"#SBATCH {line}" for line in ctx.directives]
    return "\n".join(header) + "\n" + render_pilot_body(ctx, "SLURM_JOB_ID")


def _state(native: str, reason: str = "", exit_code: int | None = None) -> PilotBatchState:
    word = native.split(maxsplit=1)[0] if native.strip() else ""  # sacct says "CANCELLED by 0"
    word = word.rstrip("+")
    ours = SLURM_STATES.get(word, BatchState.UNKNOWN)
    if reason in ("None", "(null)"):
        reason = ""
    if ours is BatchState.FAILED:
        parts = [word]
        if exit_code is not None:
            parts.append(f"exit code {exit_code}")
        if reason and reason != word:
            parts.append(reason)
        reason = ", ".join(parts)
    elif ours is BatchState.UNKNOWN:
        reason = f"unrecognised Slurm state {native!r}"
    return PilotBatchState(ours, word, reason, exit_code)


def _exit_code(text: str) -> int | None:
    """sacct ``ExitCode`` is ``code:signal``; a signal is reported as 128 + signal."""
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not match:
        return None
    code, signal = int(match.group(1)), int(match.group(2))
    return 128 + signal if signal else code


class SlurmBackend(Backend):
    name = "slurm"

    def submit(self, n: int, ctx: PilotScriptContext) -> list[str]:
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        script = render_slurm_script(ctx)
        ids: list[str] = []
        for _ in range(n):
            done = self._run(["sbatch", "--parsable"], input=script)
            if not done.ok:
                raise SubmitError(self.name, done.describe(), ids)
            match = JOB_ID.match(done.stdout.strip().splitlines()[-1] if done.stdout else "")
            if not match:
                raise SubmitError(
                    self.name, f"cannot read a job id in sbatch's answer {done.stdout!r}", ids
                )
            ids.append(match.group("id"))
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, PilotBatchState]:
        if not ids:
            return {}
        wanted = list(dict.fromkeys(ids))
        squeue: dict[str, tuple[str, str]] = {}
        done = self._run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(wanted)])
        # squeue exits 1 ("Invalid job id specified") when it knows none of the ids.
        if done.ok:
            for line in done.stdout.splitlines():
                fields = line.strip().split("|")
                if len(fields) >= 2 and fields[0] in wanted:
                    squeue[fields[0]] = (fields[1], fields[2] if len(fields) > 2 else "")
        # Ended jobs squeue no longer shows, and failed ones (for their exit code): sacct.
        ask = [
            i
            for i in wanted
            if i not in squeue or SLURM_STATES.get(squeue[i][0]) is BatchState.FAILED
        ]
        sacct = self._sacct(ask) if ask else {}
        out: dict[str, PilotBatchState] = {}
        for job in wanted:
            native, reason = squeue.get(job, ("", ""))
            accounted, exit_code = sacct.get(job, ("", None))
            if native or accounted:
                out[job] = _state(native or accounted, reason, exit_code)
            else:
                out[job] = unknown()
        return out

    def _sacct(self, ids: Sequence[str]) -> dict[str, tuple[str, int | None]]:
        base = ["sacct", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", ",".join(ids)]
        done = self._run(base)
        if not done.ok or "accounting storage is disabled" in done.stdout + done.stderr:
            done = self._run([base[0], "-c", *base[1:]])
            if not done.ok:
                return {}
        out: dict[str, tuple[str, int | None]] = {}
        for line in done.stdout.splitlines():
            fields = line.strip().split("|")
            # Skip job steps (123.batch, 123.extern): the job's own line carries its state.
            if len(fields) < 3 or fields[0] not in ids:
                continue
            out[fields[0]] = (fields[1], _exit_code(fields[2]))
        return out

    def cancel(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        done = self._run(["scancel", *ids])
        # scancel of an id that already ended says "Invalid job id"; that is not a failure.
        if not done.ok and "Invalid job id" not in done.stderr:
            raise BackendError(self.name, done.describe())

    def drain(self, ids: Sequence[str]) -> None:
        """Pending pilots are cancelled; running ones get ``scancel --batch --signal=TERM``,
        which reaches the batch shell only -- the agent the pilot script ``exec``s, or the shell
        that passes the signal on to an agent it fetched -- and not its jobs (a plain ``scancel``
        signals every process of the job, so the jobs would die with the pilot instead of being
        drained and requeued)."""
        if not ids:
            return
        states = self.status(ids)
        queued = [i for i in ids if states[i].state is BatchState.QUEUED]
        running = [i for i in ids if states[i].state is BatchState.RUNNING]
        self.cancel(queued)
        if running:
            done = self._run(["scancel", "--batch", "--signal=TERM", *running])
            if not done.ok and "Invalid job id" not in done.stderr:
                raise BackendError(self.name, done.describe())

    def log_paths(self, batch_id: str, log_dir: Path) -> PilotLogs:
        return PilotLogs(log_dir / f"pilot-{batch_id}.out", log_dir / f"pilot-{batch_id}.err")
