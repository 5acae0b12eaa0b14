"""Shared pieces of the factory tests: a pilot script context, a recording fake command runner,
a deadline-based wait, and fake HTCondor and PBS command-line tools.

The fake tools exist because no HTCondor or PBS daemons can run on the test machines: they are
small Python scripts put first on PATH that answer like ``condor_submit``/``condor_q``/
``condor_rm``/``condor_history`` and ``qsub``/``qstat``/``qdel`` (output formats from the tools'
manuals) and keep their job table in a JSON file the tests can change (start or end a job).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pilotwms.factory.backends.base import CommandRunner, CompletedCommand, PilotScriptContext


def wait_for(
    predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class FakeRunner(CommandRunner):
    """Answers commands from a script of recorded outputs, keyed by the program name."""

    answers: dict[
        str, list[CompletedCommand | Callable[[Sequence[str], str | None], CompletedCommand]]
    ] = field(default_factory=dict)
    calls: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = None

    def answer(self, program: str, stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.answers.setdefault(program, []).append(
            CompletedCommand((program,), returncode, stdout, stderr)
        )

    def run(
        self, argv: Sequence[str], input: str | None = None, timeout: float = 60.0
    ) -> CompletedCommand:
        args = tuple(argv)
        self.calls.append((args, input))
        queue = self.answers.get(args[0])
        if not queue:
            raise AssertionError(f"unexpected command {args}")
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        done = item(args, input) if callable(item) else item
        return CompletedCommand(args, done.returncode, done.stdout, done.stderr)

    def argvs(self, program: str) -> list[tuple[str, ...]]:
        return [argv for argv, _ in self.calls if argv[0] == program]


@pytest.fixture
def ctx(tmp_path: Path) -> PilotScriptContext:
    return PilotScriptContext(
        server_url="https://wms.example.org",
        token="tok-123",
        queue="q1",
        site="NIKHEF",
        wait_term=300,
        max_runtime=3000,
        log_dir=tmp_path / "logs",
        cores=4,
        memory_mb=8000,
        walltime_s=3600,
        environment={"FOO": "bar baz"},
    )


# -- fake batch-system tools -------------------------------------------------------------------

_FAKE_COMMON = r"""
import json, os, re, sys
STATE = os.environ["FAKE_BATCH_STATE"]

def load():
    try:
        with open(STATE) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {"next": 1, "jobs": {}}

def save(state):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, STATE)
"""

FAKE_CONDOR = (
    _FAKE_COMMON
    + r"""
ATTRS_DEFAULT = "undefined"

def af_line(job_id, job, attrs):
    values = [str(job.get(a, ATTRS_DEFAULT)) for a in attrs]
    return "\t".join([job_id] + values)

def main(prog, args):
    state = load()
    if prog == "condor_submit":
        if args != ["-"]:
            print("fake condor_submit reads the description from stdin ('-')", file=sys.stderr)
            return 1
        desc = sys.stdin.read()
        exe = re.search(r"^executable = (.+)$", desc, re.M).group(1)
        if not os.access(exe, os.X_OK):
            print(f"\nERROR: Executable file {exe} does not exist", file=sys.stderr)
            return 1
        count = int(re.search(r"^queue (\d+)$", desc, re.M).group(1))
        cluster = state["next"]
        state["next"] += 1
        for proc in range(count):
            state["jobs"][f"{cluster}.{proc}"] = {"JobStatus": 1, "queue": True, "desc": desc}
        save(state)
        print("Submitting job(s)" + "." * count)
        print(f"{count} job(s) submitted to cluster {cluster}.")
        return 0
    if prog == "condor_q":
        ids = [a for a in args if re.fullmatch(r"\d+\.\d+", a)]
        attrs = args[args.index("-af:jt") + 1:]
        for job_id in ids:
            job = state["jobs"].get(job_id)
            if job and job["queue"]:
                print(af_line(job_id, job, attrs))
        return 0
    if prog == "condor_history":
        constraint = args[args.index("-constraint") + 1]
        attrs = args[args.index("-af:jt") + 1:]
        pairs = re.findall(r"ClusterId == (\d+) && ProcId == (\d+)", constraint)
        wanted = [f"{c}.{p}" for c, p in pairs]
        for job_id in wanted:
            job = state["jobs"].get(job_id)
            if job and not job["queue"]:
                print(af_line(job_id, job, attrs))
        return 0
    if prog == "condor_rm":
        rc = 0
        for job_id in args:
            job = state["jobs"].get(job_id)
            if job and job["queue"]:
                job.update(JobStatus=3, queue=False, RemoveReason='"via condor_rm (by user root)"')
                print(f"Job {job_id} marked for removal")
            else:
                cluster, proc = job_id.split(".")
                print("Couldn't find/remove all jobs matching constraint "
                      f"(ClusterId=={cluster} && ProcId=={proc})", file=sys.stderr)
                rc = 1
        save(state)
        return rc
    return 2

sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
"""
)

FAKE_PBS = (
    _FAKE_COMMON
    + r"""
def block(job_id, job):
    lines = [f"Job Id: {job_id}", f"    Job_Name = {job['name']}", "    Job_Owner = root@fakehost",
             f"    job_state = {job['job_state']}", "    queue = workq", "    server = fakepbs"]
    if "Exit_status" in job:
        lines.append(f"    Exit_status = {job['Exit_status']}")
    if "comment" in job:
        # long values wrap onto tab-indented continuation lines, as qstat -f does
        text = job["comment"]
        lines.append(f"    comment = {text[:40]}")
        for i in range(40, len(text), 40):
            lines.append("\t" + text[i:i + 40])
    lines.append(f"    Resource_List.walltime = {job['walltime']}")
    return "\n".join(lines) + "\n"

def main(prog, args):
    state = load()
    if prog == "qsub":
        script = sys.stdin.read()
        walltime = re.search(r"^#PBS -l walltime=(\S+)$", script, re.M)
        name = re.search(r"^#PBS -N (\S+)$", script, re.M)
        if not walltime or not name:
            print("qsub: script has no walltime or name", file=sys.stderr)
            return 1
        if len(name.group(1)) > 15:
            print("qsub: illegal -N value", file=sys.stderr)
            return 1
        job_id = f"{state['next']}.fakepbs"
        state["next"] += 1
        state["jobs"][job_id] = {"job_state": "Q", "name": name.group(1),
                                 "walltime": walltime.group(1), "script": script}
        save(state)
        print(job_id)
        return 0
    if prog == "qstat":
        history = "-x" in args
        ids = [a for a in args if not a.startswith("-")]
        rc = 0
        out = []
        for job_id in ids:
            job = state["jobs"].get(job_id)
            if job is None:
                print(f"qstat: Unknown Job Id {job_id}", file=sys.stderr)
                rc = 153
            elif job["job_state"] == "F" and not history:
                print(f"qstat: {job_id} Job has finished, use -x or -H to obtain "
                      "historical job information", file=sys.stderr)
                rc = 35
            else:
                out.append(block(job_id, job))
        print("\n".join(out), end="")
        return rc
    if prog == "qdel":
        rc = 0
        for job_id in args:
            job = state["jobs"].get(job_id)
            if job is None or job["job_state"] == "F":
                print(f"qdel: Unknown Job Id {job_id}", file=sys.stderr)
                rc = 153
            elif job["job_state"] == "R":
                job.update(job_state="F", Exit_status=271)
            else:
                job.update(job_state="F", comment="Job deleted by root")
        save(state)
        return rc
    return 2

sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
"""
)


@dataclass
class FakeBatch:
    """Fake batch tools on PATH plus access to their job table."""

    bin_dir: Path
    state_file: Path

    @property
    def runner(self) -> CommandRunner:
        env = dict(os.environ)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["FAKE_BATCH_STATE"] = str(self.state_file)
        return CommandRunner(env=env)

    def jobs(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.state_file.read_text())["jobs"]

    def update(self, job_id: str, **attrs: Any) -> None:
        state = json.loads(self.state_file.read_text())
        state["jobs"][job_id].update(attrs)
        self.state_file.write_text(json.dumps(state))


def _install(tmp_path: Path, source: str, programs: Sequence[str]) -> FakeBatch:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    impl = bin_dir / "_impl.py"
    impl.write_text(source)
    for program in programs:
        path = bin_dir / program
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{impl}" "$0" "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    # the implementation reads argv[0] as the program name: pass it through
    impl.write_text(
        source.replace(
            "os.path.basename(sys.argv[0]), sys.argv[1:]",
            "os.path.basename(sys.argv[1]), sys.argv[2:]",
        )
    )
    return FakeBatch(bin_dir, tmp_path / "fake-batch.json")


@pytest.fixture
def fake_condor(tmp_path: Path) -> Iterator[FakeBatch]:
    yield _install(
        tmp_path, FAKE_CONDOR, ["condor_submit", "condor_q", "condor_rm", "condor_history"]
    )


@pytest.fixture
def fake_pbs(tmp_path: Path) -> Iterator[FakeBatch]:
    yield _install(tmp_path, FAKE_PBS, ["qsub", "qstat", "qdel"])
