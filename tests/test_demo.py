"""``make demo`` runs in CI: it is the user's first impression, so it must keep working.

The script is run exactly as the Makefile runs it (the virtual environment's Python, from the
repository root); it stops its own service, and this test checks it left no pilot behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pilot_processes(under: Path) -> set[int]:
    """Processes of a pilot (agent or local-backend wrapper) working in a folder of ``under``
    (other tests may run pilots of their own at the same time)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = any(bytes(under) in arg for arg in argv)
        if mine and (b"pilotwms.agent" in argv or b"pilotwms-pilot" in argv):
            found.add(int(entry.name))
    return found


@pytest.mark.slow
def test_make_demo_runs_every_example_to_done_and_stops_the_service(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
    env.update(NO_COLOR="1", TMPDIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Demo jobs" in output  # the summary table
    for name in ("hello.jdl", "parametric.jdl", "collection.jdl", "dag.jdl", "requirements.jdl"):
        assert name in output
    assert "5/5 ok" in output and "4/4 ok" in output and "3/3 ok" in output
    assert "greeting for pilotwms" in output and "3 squared is 9" in output
    assert "pilotwms up stopped" in output
    assert "every job ended DONE with exit code 0" in output
    # Nothing of the demo is left: no pilot, and its temporary directory was removed.
    assert not pilot_processes(tmp_path)
    assert not list(tmp_path.glob("pilotwms-demo-*"))
