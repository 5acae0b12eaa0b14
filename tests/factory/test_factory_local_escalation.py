"""Cancelling a local pilot follows the agent itself, not only its ``sh`` wrapper: the pilot is
"cancelling" while any process of it lives (jobs in sessions of their own included), and what
ignores the SIGTERM gets SIGKILL once the kill grace is up."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from pilotwms.factory.backends import BatchState, LocalBackend, PilotScriptContext
from pilotwms.factory.backends.local import process_start_time, processes_of

from .conftest import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

#: An agent that ignores SIGTERM and started a job in a session of its own.
STUBBORN = """\
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
job = subprocess.Popen(["sleep", "300"], start_new_session=True)
open(os.environ["STUB_JOB"], "w").write(f"{os.getpid()} {job.pid}")
time.sleep(300)
"""

#: An agent that drains on SIGTERM for a moment, then exits 0.
DRAINING = """\
import os, signal, sys, time
def drain(*args):
    open(os.environ["STUB_JOB"], "w").write("drained")
    time.sleep(0.5)
    sys.exit(0)
signal.signal(signal.SIGTERM, drain)
open(os.environ["STUB_JOB"], "w").write("started " + os.environ["PILOTWMS_WORK_DIR"])
time.sleep(300)
"""


def _context(ctx: PilotScriptContext, tmp_path: Path, source: str) -> PilotScriptContext:
    agent = tmp_path / "agent.py"
    agent.write_text(source)
    marker = tmp_path / "marker"
    return dataclasses.replace(
        ctx, python=sys.executable, agent=str(agent), environment={"STUB_JOB": str(marker)}
    )


def test_an_agent_ignoring_sigterm_and_its_jobs_are_killed_after_the_grace(
    ctx: PilotScriptContext, tmp_path: Path
) -> None:
    context = _context(ctx, tmp_path, STUBBORN)
    backend = LocalBackend(kill_grace_s=1.0)
    (batch_id,) = backend.submit(1, context)
    marker = tmp_path / "marker"
    text = wait_for(lambda: marker.exists() and marker.read_text(), what="the stub's job")
    agent, job = (int(x) for x in str(text).split())
    backend.cancel([batch_id])
    state = backend.status([batch_id])[batch_id]
    assert (state.state, state.native) == (BatchState.RUNNING, "cancelling")
    assert process_start_time(agent) is not None  # SIGTERM ignored: still there
    wait_for(
        lambda: backend.status([batch_id])[batch_id].state is BatchState.CANCELLED,
        what="SIGKILL after the grace",
    )
    assert process_start_time(agent) is None and process_start_time(job) is None
    assert not processes_of([int(batch_id.partition("-")[0])])


def test_a_draining_agent_gets_one_sigterm_and_its_wrapper_records_the_exit(
    ctx: PilotScriptContext, tmp_path: Path
) -> None:
    context = _context(ctx, tmp_path, DRAINING)
    backend = LocalBackend(kill_grace_s=60.0)
    (batch_id,) = backend.submit(1, context)
    marker = tmp_path / "marker"
    started = wait_for(
        lambda: marker.exists() and marker.read_text().startswith("started") and marker.read_text(),
        what="agent start",
    )
    # Each pilot has a work directory of its own (an agent locks its work directory).
    assert started == f"started {context.log_dir}/work-{batch_id}"
    backend.cancel([batch_id])
    wait_for(
        lambda: backend.status([batch_id])[batch_id].state is BatchState.CANCELLED,
        what="the drained agent to end",
    )
    assert marker.read_text() == "drained"
    # The wrapper outlived the SIGTERM and wrote the agent's own exit code.
    assert (context.log_dir / f"pilot-{batch_id}.exit").read_text().strip() == "0"
    backend.forget(batch_id, context.log_dir)
    assert not list(context.log_dir.glob(f"pilot-{batch_id}*"))
