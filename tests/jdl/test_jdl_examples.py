"""The example JDLs run as written: every node's payload, executed with /bin/sh in a scratch
directory holding its InputSandbox, produces every file of its OutputSandbox."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pilotwms.classad import ClassAd
from pilotwms.jdl import expand, input_sandbox, load_jdl, validate
from pilotwms.jdl.values import string_list, string_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JOBS = ["hello", "parametric", "collection", "dag", "requirements"]


def _run_node(ad: ClassAd, workdir: Path) -> None:
    for ref in input_sandbox(ad):
        assert ref.kind == "local", ref
        shutil.copy(EXAMPLES / ref.source, workdir / ref.name)
    executable = string_of(ad, "Executable")
    assert executable
    command = [executable] if executable.startswith("/") else ["/bin/sh", executable]
    command += shlex.split(string_of(ad, "Arguments") or "")
    env = dict(os.environ)
    env.update(entry.split("=", 1) for entry in string_list(ad, "Environment"))
    stdout_name = string_of(ad, "StdOutput") or "stdout"
    stderr_name = string_of(ad, "StdError") or "stderr"
    with (workdir / stdout_name).open("w") as out, (workdir / stderr_name).open("w") as err:
        done = subprocess.run(
            command, cwd=workdir, stdout=out, stderr=err, env=env, timeout=30, check=False
        )
    assert done.returncode == 0, (workdir / stderr_name).read_text()
    for produced in string_list(ad, "OutputSandbox"):
        assert (workdir / produced).is_file(), f"{produced} not produced"


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs /bin/sh")
@pytest.mark.parametrize("name", JOBS)
def test_example_runs_and_produces_its_output_sandbox(name: str, tmp_path: Path) -> None:
    ad = load_jdl(EXAMPLES / f"{name}.jdl")
    assert validate(ad).errors == []
    expansion = expand(ad, base_dir=EXAMPLES)
    for index, node in enumerate(expansion.nodes):
        workdir = tmp_path / f"node{index}"
        workdir.mkdir()
        _run_node(node.ad, workdir)


def test_example_scripts_are_executable_sh() -> None:
    for script in EXAMPLES.glob("*.sh"):
        assert script.read_text().startswith("#!/bin/sh\n"), script
        assert os.access(script, os.X_OK), script


def test_jdl_package_does_not_import_core() -> None:
    code = (
        "import sys, pilotwms.jdl, pilotwms.cli.jdl; "
        "bad = [m for m in sys.modules if m.startswith(('pilotwms.core', 'pilotwms.server'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
