"""The Slurm backend against the REAL single-node Slurm that ``make test`` starts
(``scripts/ci/start-slurm.sh``): pilots are submitted with ``sbatch``, seen queued, running and
finished or failed through ``squeue``/``sacct``, and cancelled with ``scancel``.

The "agent" here is a stub shell script that records its arguments and sleeps or exits, so the
test exercises everything of the backend without needing a pilotwms server.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotwms.factory.backends import BatchState, PilotScriptContext, SlurmBackend

from .conftest import wait_for


def _slurm_unavailable() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH: start Slurm with 'bash scripts/ci/start-slurm.sh' (root)"
    try:
        ping = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"slurmctld is not answering 'scontrol ping': {exc}"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        said = f"{ping.stdout.strip()} {ping.stderr.strip()}".strip()
        return f"slurmctld is not answering 'scontrol ping': {said}"
    return None


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(bool(_slurm_unavailable()), reason=str(_slurm_unavailable())),
]

STUB = """\
#!/bin/sh
# stub agent: record the arguments, then behave as told by the environment
echo "args: $*"
echo "$*" > "$STUB_DIR/$SLURM_JOB_ID.args"
echo "$PILOTWMS_BATCH_ID $PILOTWMS_QUEUE" > "$STUB_DIR/$SLURM_JOB_ID.env"
sleep "${STUB_SLEEP:-0}"
exit "${STUB_EXIT:-0}"
"""


@pytest.fixture
def slurm_ctx(tmp_path: Path) -> PilotScriptContext:
    stub = tmp_path / "stub-agent.sh"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return PilotScriptContext(
        server_url="http://127.0.0.1:9",
        token="tok-slurm",
        queue="slurm-test",
        site="CI",
        wait_term=30,
        max_runtime=None,
        log_dir=tmp_path / "logs",
        cores=1,
        memory_mb=50,
        walltime_s=300,
        python="/bin/sh",
        agent=str(stub),
        environment={"STUB_DIR": str(tmp_path)},
    )


def _states(backend: SlurmBackend, ids: list[str]) -> dict[str, BatchState]:
    return {k: v.state for k, v in backend.status(ids).items()}


@pytest.fixture
def backend() -> Iterator[SlurmBackend]:
    """A Slurm backend whose pilots are all cancelled after the test, whatever happened."""
    backend = SlurmBackend()
    submitted: list[str] = []
    submit = backend.submit

    def recording_submit(n: int, ctx: PilotScriptContext) -> list[str]:
        ids = submit(n, ctx)
        submitted.extend(ids)
        return ids

    backend.submit = recording_submit  # type: ignore[method-assign]
    yield backend
    backend.cancel(submitted)


def test_real_slurm_pilots_run_finish_and_fail(
    backend: SlurmBackend, slurm_ctx: PilotScriptContext, tmp_path: Path
) -> None:
    env = dict(slurm_ctx.environment)
    short = backend.submit(
        2, dataclasses.replace(slurm_ctx, environment={**env, "STUB_SLEEP": "1"})
    )
    failing = backend.submit(
        1, dataclasses.replace(slurm_ctx, environment={**env, "STUB_EXIT": "3"})
    )
    assert len(short) == 2 and len(failing) == 1 and len(set(short + failing)) == 3
    for state in backend.status(short + failing).values():
        assert state.state in (
            BatchState.QUEUED,
            BatchState.RUNNING,
            BatchState.FINISHED,
            BatchState.FAILED,
        )

    wait_for(
        lambda: all(s is BatchState.FINISHED for s in _states(backend, short).values()),
        120,
        0.2,
        "short pilots finished",
    )
    failed = wait_for(
        lambda: (s := backend.status(failing)[failing[0]]).state is BatchState.FAILED and s,
        120,
        0.2,
        "failing pilot failed",
    )
    assert failed.exit_code == 3
    assert "exit code 3" in failed.reason

    # the agent got the documented command line and environment, and its output went to the
    # per-pilot log file
    args = (tmp_path / f"{short[0]}.args").read_text().split()
    assert args[:6] == [
        "--server",
        "http://127.0.0.1:9",
        "--queue",
        "slurm-test",
        "--site",
        "CI",
    ]
    assert (tmp_path / f"{short[0]}.env").read_text() == f"{short[0]} slurm-test\n"
    log = backend.log_paths(short[0], slurm_ctx.log_dir)
    assert "args: --server" in log.stdout.read_text()
    backend.cancel(short)  # already finished: not an error
    assert backend.status(["999999999"])["999999999"].state is BatchState.UNKNOWN


def test_real_slurm_cancel_queued_and_running(
    backend: SlurmBackend, slurm_ctx: PilotScriptContext
) -> None:
    env = dict(slurm_ctx.environment)
    (running,) = backend.submit(
        1, dataclasses.replace(slurm_ctx, environment={**env, "STUB_SLEEP": "300"})
    )
    # --begin keeps this one PENDING, so "queued" is observed deterministically
    (queued,) = backend.submit(1, dataclasses.replace(slurm_ctx, directives=("--begin=now+3600",)))
    state = backend.status([queued])[queued]
    assert (state.state, state.native) == (BatchState.QUEUED, "PENDING")
    wait_for(
        lambda: _states(backend, [running])[running] is BatchState.RUNNING,
        120,
        0.2,
        "pilot running",
    )
    backend.cancel([running, queued])
    wait_for(
        lambda: set(_states(backend, [running, queued]).values()) == {BatchState.CANCELLED},
        120,
        0.2,
        "both cancelled",
    )
