"""HTCondor: ``condor_submit``, ``condor_q -af``, ``condor_rm``, ``condor_history``.

All ``n`` pilots go in one ``condor_submit`` (one cluster, ``queue n``), read from stdin (``-``);
the pilot script is written next to the logs under a name taken from its content, so queued
pilots keep the script they were submitted with. Ids are ``Cluster.Proc``.

A *held* pilot never starts by itself (HTCondor holds jobs it cannot run: a missing file, a bad
credential), so it is reported FAILED with HTCondor's ``HoldReason``; the factory then removes it.
"""

from __future__ import annotations

import hashlib
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
    write_private,
)

__all__ = ["CONDOR_STATES", "HTCondorBackend", "render_submit_description"]

#: ``condor_submit`` prints "N job(s) submitted to cluster C."
SUBMITTED = re.compile(r"(?P<count>\d+) job\(s\) submitted to cluster (?P<cluster>\d+)\.")
JOB_ID = re.compile(r"^\d+\.\d+$")

#: JobStatus codes (HTCondor manual, "Job Status codes") -> ours; 4 depends on the exit code.
CONDOR_STATES: dict[str, BatchState] = {
    "1": BatchState.QUEUED,  # Idle
    "2": BatchState.RUNNING,  # Running
    "3": BatchState.CANCELLED,  # Removing / Removed
    "4": BatchState.FINISHED,  # Completed (FAILED if ExitCode != 0 or killed by a signal)
    "5": BatchState.FAILED,  # Held: never runs unless released
    "6": BatchState.RUNNING,  # Transferring Output
    "7": BatchState.RUNNING,  # Suspended
}
_NATIVE = {
    "1": "Idle",
    "2": "Running",
    "3": "Removed",
    "4": "Completed",
    "5": "Held",
    "6": "TransferringOutput",
    "7": "Suspended",
}
_ATTRS = ["JobStatus", "ExitCode", "ExitBySignal", "ExitSignal", "HoldReason", "RemoveReason"]


#: set by the submit description (HTCondor has no job-id variable of its own in the job's
#: environment); not PILOTWMS_*, which the pilot body clears
BATCH_ID_VARIABLE = "HTCONDOR_JOB_ID"


def render_pilot_script(ctx: PilotScriptContext) -> str:
    return "#!/bin/sh\n" + render_pilot_body(ctx, BATCH_ID_VARIABLE)


def render_submit_description(ctx: PilotScriptContext, script: Path, n: int) -> str:
    """The submit description of ``n`` pilots of one queue."""
    lines = [
        "universe = vanilla",
        f"executable = {script}",
        f"output = {ctx.log_dir}/pilot-$(ClusterId).$(ProcId).out",
        f"error = {ctx.log_dir}/pilot-$(ClusterId).$(ProcId).err",
        f"log = {ctx.log_dir}/condor.log",
        f"batch_name = pilotwms-{ctx.queue}",
        f"request_cpus = {ctx.cores}",
        f"request_memory = {ctx.memory_mb}",
        f'+PilotWMSQueue = "{ctx.queue}"',
        f'environment = "{BATCH_ID_VARIABLE}=$(ClusterId).$(ProcId)"',
        # The batch system's wall-clock limit: remove a pilot running longer than its slot.
        f"periodic_remove = JobStatus == 2 && time() - EnteredCurrentStatus > {ctx.walltime_s}",
        "should_transfer_files = YES",
        "when_to_transfer_output = ON_EXIT_OR_EVICT",
    ]
    if ctx.gpus:
        lines.append(f"request_gpus = {ctx.gpus}")
    if ctx.account:
        lines.append(f"accounting_group = {ctx.account}")
    lines += list(ctx.directives)
    lines.append(f"queue {n}")
    return "\n".join(lines) + "\n"


def _state(fields: list[str]) -> PilotBatchState:
    values = dict(zip(_ATTRS, fields, strict=False))
    code = values.get("JobStatus", "")
    ours = CONDOR_STATES.get(code, BatchState.UNKNOWN)
    native = _NATIVE.get(code, code)
    exit_code = _int(values.get("ExitCode"))
    if code == "4":
        if values.get("ExitBySignal", "").lower() == "true":
            signal = _int(values.get("ExitSignal")) or 0
            return PilotBatchState(
                BatchState.FAILED, native, f"killed by signal {signal}", 128 + signal
            )
        if exit_code:
            return PilotBatchState(BatchState.FAILED, native, f"exit code {exit_code}", exit_code)
        return PilotBatchState(BatchState.FINISHED, native, "", exit_code)
    if code == "5":
        return PilotBatchState(ours, native, f"held: {_text(values.get('HoldReason'))}")
    if code == "3":
        return PilotBatchState(ours, native, _text(values.get("RemoveReason")))
    if ours is BatchState.UNKNOWN:
        return unknown(native, f"unrecognised JobStatus {code!r}")
    return PilotBatchState(ours, native)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _text(value: str | None) -> str:
    return "" if value in (None, "undefined") else str(value).strip('"')


class HTCondorBackend(Backend):
    name = "htcondor"

    def submit(self, n: int, ctx: PilotScriptContext) -> list[str]:
        if n <= 0:
            return []
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        text = render_pilot_script(ctx)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        script = write_private(ctx.log_dir / f"pilot-{digest}.sh", text, executable=True)
        done = self._run(["condor_submit", "-"], input=render_submit_description(ctx, script, n))
        if not done.ok:
            raise SubmitError(self.name, done.describe())
        match = SUBMITTED.search(done.stdout)
        if not match:
            raise SubmitError(self.name, f"cannot read the cluster in {done.stdout.strip()!r}")
        count, cluster = int(match.group("count")), match.group("cluster")
        ids = [f"{cluster}.{proc}" for proc in range(count)]
        if count != n:
            raise SubmitError(self.name, f"asked for {n} pilots, HTCondor queued {count}", ids)
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, PilotBatchState]:
        wanted = [i for i in dict.fromkeys(ids) if JOB_ID.match(i)]
        found: dict[str, PilotBatchState] = {}
        if wanted:
            done = self._run(["condor_q", *wanted, "-af:jt", *_ATTRS])
            if done.ok:
                found.update(self._parse(done.stdout, wanted))
        missing = [i for i in wanted if i not in found]
        if missing:
            done = self._run(
                ["condor_history", "-constraint", _constraint(missing), "-af:jt", *_ATTRS]
            )
            if done.ok:
                found.update(self._parse(done.stdout, missing))
        return {i: found.get(i, unknown()) for i in dict.fromkeys(ids)}

    @staticmethod
    def _parse(text: str, wanted: Sequence[str]) -> dict[str, PilotBatchState]:
        out: dict[str, PilotBatchState] = {}
        for line in text.splitlines():
            fields = line.rstrip("\n").split("\t")
            if fields and fields[0].strip() in wanted and fields[0].strip() not in out:
                out[fields[0].strip()] = _state([f.strip() for f in fields[1:]])
        return out

    def cancel(self, ids: Sequence[str]) -> None:
        wanted = [i for i in ids if JOB_ID.match(i)]
        if not wanted:
            return
        done = self._run(["condor_rm", *wanted])
        # condor_rm of jobs already gone says "Couldn't find/remove all jobs"; that is fine.
        if not done.ok and "Couldn't find" not in done.stdout + done.stderr:
            raise BackendError(self.name, done.describe())

    def log_paths(self, batch_id: str, log_dir: Path) -> PilotLogs:
        return PilotLogs(log_dir / f"pilot-{batch_id}.out", log_dir / f"pilot-{batch_id}.err")


def _constraint(ids: Sequence[str]) -> str:
    terms = []
    for job in ids:
        cluster, proc = job.split(".")
        terms.append(f"(ClusterId == {cluster} && ProcId == {proc})")
    return " || ".join(terms)
