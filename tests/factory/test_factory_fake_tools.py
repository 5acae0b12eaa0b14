"""HTCondor and PBS backends against FAKE command-line tools on PATH.

No HTCondor or PBS daemons can run on the test machines (no packages, no licence-free server
here), so ``condor_submit``/``condor_q``/``condor_rm``/``condor_history`` and ``qsub``/``qstat``/
``qdel`` are small Python scripts (see ``conftest.py``) that answer in the formats of the real
tools' manuals and keep a job table in a JSON file. The tests change that table to play the
batch system (start a job, end it, hold it) and check what the backends make of it, through the
real ``CommandRunner`` and real processes.
"""

from __future__ import annotations

import dataclasses

import pytest

from pilotwms.factory.backends import (
    BatchState,
    HTCondorBackend,
    PBSBackend,
    PilotScriptContext,
    SubmitError,
)

from .conftest import FakeBatch


def test_condor_lifecycle(fake_condor: FakeBatch, ctx: PilotScriptContext) -> None:
    backend = HTCondorBackend(fake_condor.runner)
    ids = backend.submit(3, ctx)
    assert ids == ["1.0", "1.1", "1.2"]
    assert all(s.state is BatchState.QUEUED for s in backend.status(ids).values())
    assert "queue 3" in fake_condor.jobs()["1.0"]["desc"]

    fake_condor.update("1.0", JobStatus=2)
    fake_condor.update("1.1", JobStatus=4, ExitCode=0, queue=False)
    fake_condor.update("1.2", JobStatus=5, HoldReason='"Error from slot1: Failed to execute"')
    states = backend.status(ids)
    assert states["1.0"].state is BatchState.RUNNING
    assert states["1.1"].state is BatchState.FINISHED  # found by condor_history
    assert states["1.2"].state is BatchState.FAILED
    assert states["1.2"].reason == "held: Error from slot1: Failed to execute"

    backend.cancel(["1.0", "1.2", "1.1"])  # 1.1 already left the queue: not an error
    states = backend.status(ids)
    assert states["1.0"].state is BatchState.CANCELLED
    assert states["1.0"].reason == "via condor_rm (by user root)"
    assert states["1.2"].state is BatchState.CANCELLED
    assert backend.status(["9.0"])["9.0"].state is BatchState.UNKNOWN


def test_condor_second_submission_is_a_new_cluster(
    fake_condor: FakeBatch, ctx: PilotScriptContext
) -> None:
    backend = HTCondorBackend(fake_condor.runner)
    assert backend.submit(1, ctx) == ["1.0"]
    assert backend.submit(2, ctx) == ["2.0", "2.1"]
    assert backend.submit(0, ctx) == []


def test_condor_without_tools_on_path(ctx: PilotScriptContext) -> None:
    from pilotwms.factory.backends.base import CommandRunner

    backend = HTCondorBackend(CommandRunner(env={"PATH": "/nonexistent"}))
    with pytest.raises(SubmitError, match="condor_submit: command not found"):
        backend.submit(1, ctx)
    assert backend.status(["1.0"])["1.0"].state is BatchState.UNKNOWN


@pytest.mark.parametrize("flavor", ["pro", "torque"])
def test_pbs_lifecycle(fake_pbs: FakeBatch, ctx: PilotScriptContext, flavor: str) -> None:
    backend = PBSBackend(fake_pbs.runner, flavor=flavor)  # type: ignore[arg-type]
    ids = backend.submit(4, ctx)
    assert ids == ["1.fakepbs", "2.fakepbs", "3.fakepbs", "4.fakepbs"]
    assert all(s.state is BatchState.QUEUED for s in backend.status(ids).values())
    script = fake_pbs.jobs()["1.fakepbs"]["script"]
    assert "#PBS -l walltime=01:00:00" in script

    fake_pbs.update("1.fakepbs", job_state="R")
    fake_pbs.update("2.fakepbs", job_state="H", comment="job held, too many failed attempts to run")
    if flavor == "pro":
        fake_pbs.update("3.fakepbs", job_state="F", Exit_status=0)
    else:
        fake_pbs.update("3.fakepbs", job_state="C", Exit_status=0)
    states = backend.status(ids)
    assert states["1.fakepbs"].state is BatchState.RUNNING
    assert states["2.fakepbs"].state is BatchState.QUEUED
    assert states["2.fakepbs"].reason == "held: job held, too many failed attempts to run"
    assert states["3.fakepbs"].state is BatchState.FINISHED

    backend.cancel(["1.fakepbs", "4.fakepbs"])
    if flavor == "pro":  # finished jobs are only visible in PBS Pro's history (qstat -x)
        states = backend.status(ids)
        assert states["4.fakepbs"].state is BatchState.CANCELLED
        assert states["4.fakepbs"].reason == "Job deleted by root"
        assert states["1.fakepbs"].state is BatchState.FAILED
        assert states["1.fakepbs"].reason.startswith("killed by signal 15")
    backend.cancel(["3.fakepbs"])  # already finished: not an error
    assert backend.status(["99.fakepbs"])["99.fakepbs"].state is BatchState.UNKNOWN


def test_pbs_name_is_short_enough_for_torque(fake_pbs: FakeBatch, ctx: PilotScriptContext) -> None:
    backend = PBSBackend(fake_pbs.runner, flavor="torque")
    context = dataclasses.replace(ctx, queue="a-queue-name-longer-than-fifteen")
    assert backend.submit(1, context) == ["1.fakepbs"]
