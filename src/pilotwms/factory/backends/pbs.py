"""PBS Pro and Torque: ``qsub``, ``qstat -f`` (``-x`` for PBS Pro's finished jobs), ``qdel``.

The two dialects differ in how resources are asked for (``select=1:ncpus=4:mem=8000mb`` against
``nodes=1:ppn=4`` + ``mem``), chosen by the queue's ``pbs_flavor``; ``qstat -f``'s
``key = value`` blocks are the same in both. PBS cannot put the job id into ``-o``/``-e``
file names, so the pilot script sends its own output to ``pilot-$PBS_JOBID.out``/``.err``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pilotwms.factory.backends.base import (
    Backend,
    BackendError,
    BatchState,
    CommandRunner,
    PilotBatchState,
    PilotLogs,
    PilotScriptContext,
    SubmitError,
    render_pilot_body,
    unknown,
    walltime_hms,
)

__all__ = ["PBS_STATES", "PBSBackend", "parse_qstat_full", "render_pbs_script"]

#: ``qsub`` prints the job id: ``1234.server`` (arrays: ``1234[].server``).
JOB_ID = re.compile(r"^(?P<id>\d+(?:\[\d*\])?(?:\.[A-Za-z0-9_.-]+)?)$")

#: job_state letters of PBS Pro and Torque -> ours; F, C and X depend on Exit_status.
PBS_STATES: dict[str, BatchState] = {
    "Q": BatchState.QUEUED,  # queued
    "W": BatchState.QUEUED,  # waiting for its start time
    "T": BatchState.QUEUED,  # in transit
    "M": BatchState.QUEUED,  # moved to another server
    "H": BatchState.QUEUED,  # held (by a user, an operator or a dependency)
    "R": BatchState.RUNNING,
    "E": BatchState.RUNNING,  # exiting after having run
    "B": BatchState.RUNNING,  # array job begun
    "S": BatchState.RUNNING,  # suspended
    "U": BatchState.RUNNING,  # suspended: workstation busy
    "F": BatchState.FINISHED,  # finished (PBS Pro history)
    "C": BatchState.FINISHED,  # completed (Torque, while keep_completed lasts)
    "X": BatchState.FINISHED,  # subjob finished
}


def render_pbs_script(ctx: PilotScriptContext, flavor: Literal["pro", "torque"] = "pro") -> str:
    """The batch script of one pilot: ``#PBS`` header, own log redirection, pilot body."""
    header = [
        "#!/bin/sh",
        f"#PBS -N {('pw-' + ctx.queue)[:15]}",  # Torque caps job names at 15 characters
        f"#PBS -l walltime={walltime_hms(ctx.walltime_s)}",
    ]
    if flavor == "pro":
        select = f"select=1:ncpus={ctx.cores}:mem={ctx.memory_mb}mb"
        if ctx.gpus:
            select += f":ngpus={ctx.gpus}"
        header.append(f"#PBS -l {select}")
    else:
        nodes = f"nodes=1:ppn={ctx.cores}" + (f":gpus={ctx.gpus}" if ctx.gpus else "")
        header += [f"#PBS -l {nodes}", f"#PBS -l mem={ctx.memory_mb}mb"]
    header += [f"#PBS -o {ctx.log_dir}/", f"#PBS -e {ctx.log_dir}/"]
    if ctx.partition:
        header.append(f"#PBS -q {ctx.partition}")
    if ctx.account:
        header.append(f"#PBS -A {ctx.account}")
    header += [f"#PBS {line}" for line in ctx.directives]
    logs = shlex.quote(str(ctx.log_dir))
    header.append(f'exec >{logs}/"pilot-$PBS_JOBID.out" 2>{logs}/"pilot-$PBS_JOBID.err"')
    return "\n".join(header) + "\n" + render_pilot_body(ctx, "PBS_JOBID")


def parse_qstat_full(text: str) -> dict[str, dict[str, str]]:
    """``qstat -f`` output as ``{job id: {attribute: value}}``; wrapped values are joined."""
    jobs: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    last_key = ""
    for raw in text.splitlines():
        if raw.startswith("Job Id:"):
            current = jobs.setdefault(raw.split(":", 1)[1].strip(), {})
            last_key = ""
        elif current is None or not raw.strip():
            continue
        elif raw.startswith("\t") and last_key:
            current[last_key] += raw.strip()  # continuation of a long value
        elif " = " in raw:
            key, value = raw.strip().split(" = ", 1)
            current[key] = value
            last_key = key
    return jobs


def _state(attrs: dict[str, str]) -> PilotBatchState:
    letter = attrs.get("job_state", "").strip()
    ours = PBS_STATES.get(letter)
    if ours is None:
        return unknown(letter, f"unrecognised job_state {letter!r}")
    comment = attrs.get("comment", "")
    if ours is not BatchState.FINISHED:
        reason = "held" + (f": {comment}" if comment else "") if letter == "H" else ""
        return PilotBatchState(ours, letter, reason)
    status = attrs.get("Exit_status", attrs.get("exit_status"))
    if status is None:
        return PilotBatchState(BatchState.CANCELLED, letter, comment or "deleted before it ran")
    try:
        code = int(status)
    except ValueError:
        return PilotBatchState(BatchState.FAILED, letter, f"Exit_status {status!r}")
    if code == 0:
        return PilotBatchState(BatchState.FINISHED, letter, "", 0)
    if code < 0:
        reason = f"PBS could not run the job (Exit_status {code})"
    elif code > 256:
        reason = f"killed by signal {code - 256} (qdel or a resource limit)"
    else:
        reason = f"exit code {code}"
    return PilotBatchState(BatchState.FAILED, letter, reason, code)


class PBSBackend(Backend):
    name = "pbs"

    def __init__(
        self, runner: CommandRunner | None = None, flavor: Literal["pro", "torque"] = "pro"
    ) -> None:
        super().__init__(runner)
        self.flavor = flavor

    def submit(self, n: int, ctx: PilotScriptContext) -> list[str]:
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        script = render_pbs_script(ctx, self.flavor)
        ids: list[str] = []
        for _ in range(n):
            done = self._run(["qsub"], input=script)
            if not done.ok:
                raise SubmitError(self.name, done.describe(), ids)
            lines = done.stdout.strip().splitlines()
            match = JOB_ID.match(lines[-1].strip()) if lines else None
            if not match:
                raise SubmitError(self.name, f"cannot read a job id in {done.stdout!r}", ids)
            ids.append(match.group("id"))
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, PilotBatchState]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, PilotBatchState] = {}
        if not wanted:
            return found
        # qstat answers for the ids it knows and complains on stderr about the others.
        done = self._run(["qstat", "-f", *wanted])
        for job, attrs in parse_qstat_full(done.stdout).items():
            if job in wanted:
                found[job] = _state(attrs)
        missing = [i for i in wanted if i not in found]
        if missing and self.flavor == "pro":
            done = self._run(["qstat", "-f", "-x", *missing])
            for job, attrs in parse_qstat_full(done.stdout).items():
                if job in missing:
                    found[job] = _state(attrs)
        return {i: found.get(i, unknown()) for i in wanted}

    def cancel(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        done = self._run(["qdel", *ids])
        said = done.stdout + done.stderr
        if not done.ok and "Unknown Job Id" not in said and "finished" not in said:
            raise BackendError(self.name, done.describe())

    def log_paths(self, batch_id: str, log_dir: Path) -> PilotLogs:
        return PilotLogs(log_dir / f"pilot-{batch_id}.out", log_dir / f"pilot-{batch_id}.err")
