"""Backends against a fake command runner answering with outputs in the formats the real tools
document: the commands each backend runs, how it reads ids and states, partial failures, and
the pilot scripts it writes (checked with ``sh -n`` and by running the body with a stub Python)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from pilotwms.factory.backends import (
    BACKENDS,
    BackendError,
    BatchState,
    CommandRunner,
    HTCondorBackend,
    PBSBackend,
    PilotScriptContext,
    SlurmBackend,
    SubmitError,
    make_backend,
)
from pilotwms.factory.backends.base import agent_command, render_pilot_body, walltime_hms
from pilotwms.factory.backends.htcondor import CONDOR_STATES, render_submit_description
from pilotwms.factory.backends.htcondor import render_pilot_script as render_condor_script
from pilotwms.factory.backends.pbs import PBS_STATES, parse_qstat_full, render_pbs_script
from pilotwms.factory.backends.slurm import SLURM_STATES, render_slurm_script

from .conftest import FakeRunner

# -- the common pilot command and body ----------------------------------------------------------


def test_agent_command_line(ctx: PilotScriptContext) -> None:
    agent = dataclasses.replace(
        ctx, agent="/opt/pilotwms/agent.pyz", extra_args=("--debug",), tags=("a", "b")
    )
    assert agent_command(agent) == [
        "python3",
        "/opt/pilotwms/agent.pyz",
        "--server",
        "https://wms.example.org",
        "--queue",
        "q1",
        "--site",
        "NIKHEF",
        "--cores",
        "4",
        "--memory-mb",
        "8000",
        "--wait-term",
        "300",
        "--tags",
        "a,b",
        "--max-runtime",
        "3000",
        "--debug",
    ]
    installed = dataclasses.replace(ctx, max_runtime=None)
    assert agent_command(installed)[:3] == ["python3", "-m", "pilotwms.agent"]
    assert "--max-runtime" not in agent_command(installed)
    assert "--tags" not in agent_command(installed)
    # the token is never on a command line (readable by every user of the node through ps)
    assert "--token" not in agent_command(agent) and "tok-123" not in agent_command(agent)


def _stub_python(tmp_path: Path) -> Path:
    """A 'python' that records its arguments and, for the fetch one-liner, creates the file."""
    stub = tmp_path / "stub-python"
    stub.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-c" ]; then echo fetched > "$4"; echo "fetch $3" >> "$STUB_LOG"; exit 0; fi\n'
        'for a in "$@"; do printf "%s\\n" "$a"; done > "$STUB_LOG.args"\n'
        'echo "FOO=$FOO QUEUE=$PILOTWMS_QUEUE ID=$PILOTWMS_BATCH_ID" >> "$STUB_LOG"\n'
        'echo "LEAK=${PILOTWMS_CORES:-none} ${PILOTWMS_FACTORY_STATE_DIR:-none}" >> "$STUB_LOG"\n'
        "exit 7\n"
    )
    stub.chmod(0o755)
    return stub


@pytest.mark.parametrize(
    "agent", ["/opt/agent.pyz", "https://wms.example.org/api/v1/pilot/agent.pyz"]
)
def test_pilot_body_runs_the_agent_with_exact_arguments(
    ctx: PilotScriptContext, tmp_path: Path, agent: str
) -> None:
    context = dataclasses.replace(
        ctx, python=str(_stub_python(tmp_path)), agent=agent, extra_args=("it's", "$HOME")
    )
    script = tmp_path / "body.sh"
    script.write_text(render_pilot_body(context, "SLURM_JOB_ID"))
    log = tmp_path / "stub.log"
    done = subprocess.run(
        ["sh", str(script)],
        env={
            "STUB_LOG": str(log),
            "PATH": "/usr/bin:/bin",
            "SLURM_JOB_ID": "4242",
            # the factory's own environment, passed on by the batch system
            "PILOTWMS_CORES": "99",
            "PILOTWMS_FACTORY_STATE_DIR": "/factory",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 7  # the agent's exit code is the pilot's
    args = (tmp_path / "stub.log.args").read_text().splitlines()
    assert args[1:] == agent_command(context)[2:]
    assert args[-2:] == ["it's", "$HOME"]
    assert "FOO=bar baz QUEUE=q1 ID=4242" in log.read_text()
    assert "LEAK=none none" in log.read_text()
    if agent.startswith("https://"):
        assert args[0].endswith("/agent.pyz") and args[0] != agent
        assert f"fetch {agent}" in log.read_text()
    else:
        assert args[0] == agent


@pytest.mark.parametrize(
    ("render", "variable", "value"),
    [
        (render_slurm_script, "SLURM_JOB_ID", "4242"),
        (lambda ctx: render_pbs_script(ctx, "pro"), "PBS_JOBID", "77.pbs01"),
        (render_condor_script, "HTCONDOR_JOB_ID", "12.3"),
    ],
)
def test_each_batch_script_tells_the_agent_its_batch_id(
    ctx: PilotScriptContext, tmp_path: Path, render: object, variable: str, value: str
) -> None:
    context = dataclasses.replace(
        ctx, python=str(_stub_python(tmp_path)), log_dir=tmp_path, environment={}
    )
    script = tmp_path / "pilot.sh"
    script.write_text(render(context))  # type: ignore[operator]
    log = tmp_path / "stub.log"
    env = {"STUB_LOG": str(log), "PATH": "/usr/bin:/bin", variable: value}
    subprocess.run(["sh", str(script)], env=env, check=False, timeout=60)
    assert f"QUEUE=q1 ID={value}" in log.read_text()


def test_pilot_body_says_when_the_agent_cannot_be_fetched(
    ctx: PilotScriptContext, tmp_path: Path
) -> None:
    context = dataclasses.replace(ctx, python="false", agent="https://wms.example.org/a'b.pyz")
    script = tmp_path / "body.sh"
    script.write_text(render_pilot_body(context))
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 90
    assert done.stderr == "cannot fetch the agent from https://wms.example.org/a'b.pyz\n"


def test_walltime_format() -> None:
    assert walltime_hms(3600) == "01:00:00"
    assert walltime_hms(172800 + 61) == "48:01:01"


def test_backend_registry() -> None:
    assert set(BACKENDS) == {"local", "slurm", "htcondor", "pbs"}
    assert isinstance(make_backend("slurm"), SlurmBackend)
    pbs = make_backend("pbs", pbs_flavor="torque")
    assert isinstance(pbs, PBSBackend) and pbs.flavor == "torque"
    with pytest.raises(BackendError, match="no such backend"):
        make_backend("kubernetes")


def test_command_runner_reports_missing_program_and_timeout() -> None:
    runner = CommandRunner()
    missing = runner.run(["pilotwms-no-such-program"])
    assert missing.returncode == 127 and "not found" in missing.describe()
    slow = runner.run(["sleep", "5"], timeout=0.2)
    assert slow.returncode == 124 and "no answer within" in slow.stderr
    echo = runner.run(["cat"], input="hello")
    assert echo.ok and echo.stdout == "hello"


# -- Slurm --------------------------------------------------------------------------------------


def _sh_syntax_ok(tmp_path: Path, text: str) -> None:
    path = tmp_path / "check.sh"
    path.write_text(text)
    done = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_slurm_script(ctx: PilotScriptContext, tmp_path: Path) -> None:
    context = dataclasses.replace(
        ctx,
        partition="short",
        account="proj",
        gpus=1,
        directives=("--qos=normal",),
        walltime_s=3601,
    )
    text = render_slurm_script(context)
    for line in [
        "#SBATCH --job-name=pilotwms-q1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8000M",
        "#SBATCH --time=01:01:00",
        f"#SBATCH --output={ctx.log_dir}/pilot-%j.out",
        f"#SBATCH --error={ctx.log_dir}/pilot-%j.err",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --partition=short",
        "#SBATCH --account=proj",
        "#SBATCH --qos=normal",
        "export FOO='bar baz'",
    ]:
        assert line in text.splitlines()
    _sh_syntax_ok(tmp_path, text)


def test_slurm_submit_exactly_n(ctx: PilotScriptContext) -> None:
    runner = FakeRunner()
    runner.answer("sbatch", "4242\n")
    runner.answer("sbatch", "4243;cluster1\n")
    runner.answer("sbatch", "4244\n")
    ids = SlurmBackend(runner).submit(3, ctx)
    assert ids == ["4242", "4243", "4244"]
    assert runner.argvs("sbatch") == [("sbatch", "--parsable")] * 3
    assert all(script and script.startswith("#!/bin/sh\n#SBATCH") for _, script in runner.calls)


def test_slurm_partial_submission_keeps_the_ids(ctx: PilotScriptContext) -> None:
    runner = FakeRunner()
    runner.answer("sbatch", "100\n")
    runner.answer(
        "sbatch",
        "",
        1,
        "sbatch: error: Batch job submission failed: "
        "Invalid account or account/partition combination specified\n",
    )
    with pytest.raises(SubmitError) as info:
        SlurmBackend(runner).submit(3, ctx)
    assert info.value.submitted == ["100"]
    assert "Invalid account" in str(info.value)


def test_slurm_unreadable_answer(ctx: PilotScriptContext) -> None:
    runner = FakeRunner()
    runner.answer("sbatch", "Submitted batch job 12\n")
    with pytest.raises(SubmitError, match="cannot read a job id"):
        SlurmBackend(runner).submit(1, ctx)


def test_slurm_status_from_squeue_and_sacct() -> None:
    runner = FakeRunner()
    runner.answer(
        "squeue", "4242|PENDING|Priority\n4243|RUNNING|None\n4244|FAILED|NonZeroExitCode\n"
    )
    runner.answer("sacct", "", 1, "Slurm accounting storage is disabled\n")
    runner.answer(
        "sacct",
        "4244|FAILED|3:0\n4245|COMPLETED|0:0\n4245.batch|COMPLETED|0:0\n"
        "4246|CANCELLED by 0|0:15\n4247|TIMEOUT|0:0\n4248|OUT_OF_MEMORY|0:125\n",
    )
    ids = ["4242", "4243", "4244", "4245", "4246", "4247", "4248", "4249"]
    states = SlurmBackend(runner).status(ids)
    assert {k: v.state for k, v in states.items()} == {
        "4242": BatchState.QUEUED,
        "4243": BatchState.RUNNING,
        "4244": BatchState.FAILED,
        "4245": BatchState.FINISHED,
        "4246": BatchState.CANCELLED,
        "4247": BatchState.FAILED,
        "4248": BatchState.FAILED,
        "4249": BatchState.UNKNOWN,
    }
    assert states["4244"].reason == "FAILED, exit code 3, NonZeroExitCode"
    assert states["4244"].exit_code == 3
    assert states["4247"].reason == "TIMEOUT, exit code 0"
    assert states["4248"].exit_code == 128 + 125
    assert runner.argvs("squeue") == [
        ("squeue", "-h", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(ids))
    ]
    # sacct without accounting storage: fall back to the job-completion log (-c)
    assert [a[:2] for a in runner.argvs("sacct")] == [("sacct", "-n"), ("sacct", "-c")]
    assert runner.argvs("sacct")[0][-1] == "4244,4245,4246,4247,4248,4249"


def test_slurm_squeue_knows_none_of_the_ids() -> None:
    runner = FakeRunner()
    runner.answer("squeue", "", 1, "slurm_load_jobs error: Invalid job id specified\n")
    runner.answer("sacct", "7|COMPLETED|0:0\n")
    states = SlurmBackend(runner).status(["7"])
    assert states["7"].state is BatchState.FINISHED


def test_slurm_cancel() -> None:
    runner = FakeRunner()
    runner.answer("scancel", "")
    backend = SlurmBackend(runner)
    backend.cancel(["1", "2"])
    backend.cancel([])
    assert runner.argvs("scancel") == [("scancel", "1", "2")]
    runner.answers["scancel"] = []
    runner.answer(
        "scancel", "", 1, "scancel: error: Kill job error on job id 9: Access/permission denied\n"
    )
    with pytest.raises(BackendError, match="permission denied"):
        backend.cancel(["9"])


def test_slurm_state_table_covers_the_documented_states() -> None:
    documented = {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "CONFIGURING",
        "COMPLETING",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PENDING",
        "PREEMPTED",
        "RUNNING",
        "RESV_DEL_HOLD",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "REQUEUED",
        "RESIZING",
        "REVOKED",
        "SIGNALING",
        "SPECIAL_EXIT",
        "STAGE_OUT",
        "STOPPED",
        "SUSPENDED",
        "TIMEOUT",
    }
    assert documented <= set(SLURM_STATES)


# -- HTCondor ----------------------------------------------------------------------------------


def test_condor_submit_description(ctx: PilotScriptContext, tmp_path: Path) -> None:
    context = dataclasses.replace(
        ctx, gpus=2, account="group_x", directives=("requirements = true",)
    )
    text = render_submit_description(context, tmp_path / "pilot.sh", 5)
    lines = text.splitlines()
    assert f"executable = {tmp_path / 'pilot.sh'}" in lines
    assert f"output = {ctx.log_dir}/pilot-$(ClusterId).$(ProcId).out" in lines
    assert "request_cpus = 4" in lines and "request_memory = 8000" in lines
    assert "request_gpus = 2" in lines and "accounting_group = group_x" in lines
    assert "requirements = true" in lines
    assert 'environment = "HTCONDOR_JOB_ID=$(ClusterId).$(ProcId)"' in lines
    assert lines[-1] == "queue 5"


def test_condor_submit_one_cluster(ctx: PilotScriptContext) -> None:
    runner = FakeRunner()
    runner.answer("condor_submit", "Submitting job(s)...\n3 job(s) submitted to cluster 77.\n")
    ids = HTCondorBackend(runner).submit(3, ctx)
    assert ids == ["77.0", "77.1", "77.2"]
    ((argv, description),) = runner.calls
    assert argv == ("condor_submit", "-")
    assert description is not None and "queue 3" in description
    script = Path(description.split("executable = ")[1].splitlines()[0])
    assert script.stat().st_mode & 0o777 == 0o700  # it holds the pilot token
    assert "tok-123" in script.read_text()


def test_condor_submit_failure(ctx: PilotScriptContext) -> None:
    runner = FakeRunner()
    runner.answer("condor_submit", "", 1, "\nERROR: Failed to connect to local queue manager\n")
    with pytest.raises(SubmitError, match="Failed to connect"):
        HTCondorBackend(runner).submit(2, ctx)


def test_condor_status_queue_then_history() -> None:
    runner = FakeRunner()
    runner.answer(
        "condor_q",
        "77.0\t1\tundefined\tundefined\tundefined\tundefined\tundefined\n"
        "77.1\t2\tundefined\tundefined\tundefined\tundefined\tundefined\n"
        "77.2\t5\tundefined\tundefined\tundefined\t"
        "Error from slot1@node: Failed to execute '/x/pilot.sh'\tundefined\n",
    )
    runner.answer(
        "condor_history",
        "77.3\t4\t0\tfalse\tundefined\tundefined\tundefined\n"
        "77.4\t4\t2\tfalse\tundefined\tundefined\tundefined\n"
        "77.5\t4\tundefined\ttrue\t9\tundefined\tundefined\n"
        "77.6\t3\tundefined\tundefined\tundefined\tundefined\tvia condor_rm (by user pilot)\n",
    )
    ids = [f"77.{i}" for i in range(8)]
    states = HTCondorBackend(runner).status(ids)
    assert [states[i].state for i in ids] == [
        BatchState.QUEUED,
        BatchState.RUNNING,
        BatchState.FAILED,
        BatchState.FINISHED,
        BatchState.FAILED,
        BatchState.FAILED,
        BatchState.CANCELLED,
        BatchState.UNKNOWN,
    ]
    assert states["77.2"].reason == "held: Error from slot1@node: Failed to execute '/x/pilot.sh'"
    assert states["77.4"].reason == "exit code 2"
    assert states["77.5"].reason == "killed by signal 9"
    assert states["77.6"].reason == "via condor_rm (by user pilot)"
    history = runner.argvs("condor_history")[0]
    assert history[1:3] == (
        "-constraint",
        " || ".join(f"(ClusterId == 77 && ProcId == {i})" for i in range(3, 8)),
    )


def test_condor_state_table() -> None:
    assert set(CONDOR_STATES) == {"1", "2", "3", "4", "5", "6", "7"}


def test_condor_cancel_tolerates_jobs_already_gone() -> None:
    runner = FakeRunner()
    runner.answer(
        "condor_rm",
        "",
        1,
        "Couldn't find/remove all jobs matching constraint (ClusterId==1 && ProcId==0)\n",
    )
    HTCondorBackend(runner).cancel(["1.0"])
    assert runner.argvs("condor_rm") == [("condor_rm", "1.0")]


# -- PBS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "lines"),
    [
        ("pro", ["#PBS -l select=1:ncpus=4:mem=8000mb:ngpus=1"]),
        ("torque", ["#PBS -l nodes=1:ppn=4:gpus=1", "#PBS -l mem=8000mb"]),
    ],
)
def test_pbs_script(ctx: PilotScriptContext, tmp_path: Path, flavor: str, lines: list[str]) -> None:
    context = dataclasses.replace(
        ctx, queue="a-very-long-queue-name", gpus=1, partition="long", account="proj"
    )
    text = render_pbs_script(context, flavor)  # type: ignore[arg-type]
    got = text.splitlines()
    for line in [
        *lines,
        "#PBS -N pw-a-very-long-",
        "#PBS -l walltime=01:00:00",
        "#PBS -q long",
        "#PBS -A proj",
        f"#PBS -o {ctx.log_dir}/",
    ]:
        assert line in got
    assert f'exec >{ctx.log_dir}/"pilot-$PBS_JOBID.out"' in text
    _sh_syntax_ok(tmp_path, text)


QSTAT_F = """\
Job Id: 1234.pbs01
    Job_Name = pw-q1
    Job_Owner = pilot@login01
    job_state = R
    queue = workq
    comment = Job run at Tue Nov 18 at 10:00 on (node01:ncpus=4:mem=8192000kb
\t)

Job Id: 1235.pbs01
    Job_Name = pw-q1
    job_state = Q
    queue = workq

Job Id: 1236.pbs01
    Job_Name = pw-q1
    job_state = H
    comment = job held, too many failed attempts to run
"""

QSTAT_FX = """\
Job Id: 1237.pbs01
    job_state = F
    Exit_status = 0

Job Id: 1238.pbs01
    job_state = F
    Exit_status = 1

Job Id: 1239.pbs01
    job_state = F
    comment = Job deleted by pilot

Job Id: 1240.pbs01
    job_state = F
    Exit_status = 271

Job Id: 1241.pbs01
    job_state = F
    Exit_status = -1
"""


def test_parse_qstat_full_joins_continuation_lines() -> None:
    jobs = parse_qstat_full(QSTAT_F)
    assert list(jobs) == ["1234.pbs01", "1235.pbs01", "1236.pbs01"]
    assert jobs["1234.pbs01"]["comment"].endswith("mem=8192000kb)")


def test_pbs_status_with_history() -> None:
    runner = FakeRunner()
    runner.answer("qstat", QSTAT_F, 35, "qstat: 1237.pbs01 Job has finished, use -x or -H\n")
    runner.answer("qstat", QSTAT_FX, 153, "qstat: Unknown Job Id 1242.pbs01\n")
    ids = [f"{n}.pbs01" for n in range(1234, 1243)]
    states = PBSBackend(runner).status(ids)
    assert [states[i].state for i in ids] == [
        BatchState.RUNNING,
        BatchState.QUEUED,
        BatchState.QUEUED,
        BatchState.FINISHED,
        BatchState.FAILED,
        BatchState.CANCELLED,
        BatchState.FAILED,
        BatchState.FAILED,
        BatchState.UNKNOWN,
    ]
    assert states["1236.pbs01"].reason == "held: job held, too many failed attempts to run"
    assert states["1238.pbs01"].reason == "exit code 1"
    assert states["1239.pbs01"].reason == "Job deleted by pilot"
    assert states["1240.pbs01"].reason.startswith("killed by signal 15")
    assert "could not run" in states["1241.pbs01"].reason
    assert runner.argvs("qstat")[1][:3] == ("qstat", "-f", "-x")


def test_torque_does_not_ask_for_history() -> None:
    runner = FakeRunner()
    runner.answer("qstat", "Job Id: 5.torque\n    job_state = C\n    exit_status = 0\n")
    states = PBSBackend(runner, flavor="torque").status(["5.torque", "6.torque"])
    assert states["5.torque"].state is BatchState.FINISHED
    assert states["6.torque"].state is BatchState.UNKNOWN
    assert len(runner.argvs("qstat")) == 1


def test_pbs_submit_and_cancel(ctx: PilotScriptContext) -> None:
    runner = FakeRunner()
    runner.answer("qsub", "1234.pbs01\n")
    runner.answer("qsub", "1235.pbs01\n")
    runner.answer("qdel", "")
    backend = PBSBackend(runner)
    assert backend.submit(2, ctx) == ["1234.pbs01", "1235.pbs01"]
    backend.cancel(["1234.pbs01"])
    assert runner.argvs("qdel") == [("qdel", "1234.pbs01")]


def test_pbs_state_table() -> None:
    assert set("QWTMHREBSUFCX") == set(PBS_STATES)
