"""The local backend with real processes: pilots as detached process groups whose ids survive
pid reuse, exit codes, cancel reaching the whole group, and per-pilot log files."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotwms.factory.backends import BatchState, LocalBackend, PilotScriptContext
from pilotwms.factory.backends.local import process_start_time

from .conftest import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

AGENT = """\
import os, subprocess, sys, time
args = sys.argv[1:]
print("agent", " ".join(args), flush=True)
print("to stderr", file=sys.stderr, flush=True)
print("batch id", os.environ["PILOTWMS_BATCH_ID"], os.environ["PILOTWMS_QUEUE"], flush=True)
print("leak", os.environ.get("PILOTWMS_CORES", "none"), flush=True)
print("token", os.environ.get("PILOTWMS_TOKEN", "missing"), flush=True)
mode = os.environ.get("STUB_MODE", "sleep")
if mode == "child":
    child = subprocess.Popen(["sleep", "300"])
    open(os.environ["STUB_CHILD"], "w").write(str(child.pid))
    child.wait()
elif mode == "sleep":
    time.sleep(float(os.environ.get("STUB_SLEEP", "300")))
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
"""


@pytest.fixture
def local_ctx(ctx: PilotScriptContext, tmp_path: Path) -> Iterator[PilotScriptContext]:
    agent = tmp_path / "stub_agent.py"
    agent.write_text(AGENT)
    yield dataclasses.replace(ctx, python=sys.executable, agent=str(agent), environment={})
    # Whatever a failed test left running is stopped, so no stub outlives the test run.
    ids = [p.name[len("pilot-") : -len(".out")] for p in ctx.log_dir.glob("pilot-*.out")]
    LocalBackend(log_dir=ctx.log_dir).cancel(ids)


def _state(backend: LocalBackend, batch_id: str) -> BatchState:
    return backend.status([batch_id])[batch_id].state


def test_pilots_run_finish_and_fail(
    local_ctx: PilotScriptContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTWMS_CORES", "99")  # the factory's own settings stay its own
    backend = LocalBackend()
    ok = backend.submit(2, dataclasses.replace(local_ctx, environment={"STUB_SLEEP": "0.2"}))
    bad = backend.submit(
        1, dataclasses.replace(local_ctx, environment={"STUB_SLEEP": "0", "STUB_EXIT": "3"})
    )
    assert len(ok) == 2 and len(set(ok)) == 2
    for batch_id in ok + bad:
        pid, start = batch_id.split("-")
        assert pid.isdigit() and start.isdigit()
    wait_for(
        lambda: all(_state(backend, i) is BatchState.FINISHED for i in ok), what="pilots to finish"
    )
    failed = wait_for(
        lambda: (s := backend.status(bad)[bad[0]]).state is BatchState.FAILED and s, what="failure"
    )
    assert failed.reason == "exit code 3" and failed.exit_code == 3
    logs = backend.log_paths(ok[0], local_ctx.log_dir)
    out = logs.stdout.read_text()
    assert out.startswith("agent --server https://wms.example.org --queue q1")
    assert "tok-123" not in out.splitlines()[0]  # the command line
    assert "--wait-term 300 --max-runtime 3000" in out
    assert logs.stderr.read_text() == "to stderr\n"
    assert f"batch id {ok[0]} q1\n" in out
    assert "leak none\n" in out
    assert "token tok-123\n" in out  # through the environment, not the command line


def test_cancel_kills_the_whole_process_group(
    local_ctx: PilotScriptContext, tmp_path: Path
) -> None:
    child_file = tmp_path / "child.pid"
    context = dataclasses.replace(
        local_ctx, environment={"STUB_MODE": "child", "STUB_CHILD": str(child_file)}
    )
    backend = LocalBackend()
    (batch_id,) = backend.submit(1, context)
    assert _state(backend, batch_id) is BatchState.RUNNING
    child = int(
        wait_for(lambda: child_file.exists() and child_file.read_text(), what="agent's child")
    )
    backend.cancel([batch_id])
    wait_for(lambda: _state(backend, batch_id) is BatchState.CANCELLED, what="cancelled")
    wait_for(lambda: process_start_time(child) is None, what="agent's child to die")
    backend.cancel([batch_id])  # cancelling twice is harmless


def test_status_from_a_new_factory_process(local_ctx: PilotScriptContext) -> None:
    """Another backend object (the factory restarted) finds the pilots through their files."""
    (batch_id,) = LocalBackend().submit(
        1, dataclasses.replace(local_ctx, environment={"STUB_SLEEP": "300"})
    )
    fresh = LocalBackend(log_dir=local_ctx.log_dir)
    assert _state(fresh, batch_id) is BatchState.RUNNING
    fresh.cancel([batch_id])
    wait_for(lambda: _state(fresh, batch_id) is BatchState.CANCELLED, what="cancelled")


def test_pid_reuse_is_not_mistaken_for_a_pilot(local_ctx: PilotScriptContext) -> None:
    backend = LocalBackend(log_dir=local_ctx.log_dir)
    local_ctx.log_dir.mkdir(parents=True, exist_ok=True)
    impostor = f"{os.getpid()}-1"  # a live pid, but not with that start time
    assert _state(backend, impostor) is BatchState.UNKNOWN
    backend.cancel([impostor])  # must not signal this test process
    assert backend.status(["garbage"])["garbage"].state is BatchState.UNKNOWN


def test_killed_pilot_is_failed(local_ctx: PilotScriptContext) -> None:
    import signal

    backend = LocalBackend()
    (batch_id,) = backend.submit(
        1, dataclasses.replace(local_ctx, environment={"STUB_SLEEP": "300"})
    )
    pid = int(batch_id.split("-")[0])
    os.killpg(pid, signal.SIGKILL)  # e.g. the OOM killer, not the factory
    state = wait_for(
        lambda: (s := backend.status([batch_id])[batch_id]).state is BatchState.FAILED and s,
        what="failed",
    )
    assert "ended without an exit code" in state.reason


def test_default_command_is_the_installed_agent(ctx: PilotScriptContext) -> None:
    assert LocalBackend.command(ctx)[:3] == [sys.executable, "-m", "pilotwms.agent"]
