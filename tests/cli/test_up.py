"""``pilotwms up`` as a user runs it: a subprocess with its server and real local pilots.

Every wait is for a condition with a deadline (the machine running the tests may be small and
busy); the pilots' processes are found through the server's pilot list (their batch ids name
the process groups the local backend started) and looked up in ``/proc``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pilotwms.client import Client
from pilotwms.embedded import CREDENTIALS_FILE, STATE_FILE, processes_of

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
READY_DEADLINE_S = 120.0
STOP_DEADLINE_S = 90.0


def wait_for(condition: Callable[[], object], deadline_s: float, what: str) -> object:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {deadline_s:.0f}s: {what}")


def start_time(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()[19]


class Up:
    """One ``pilotwms up`` subprocess on ``data_dir``."""

    def __init__(self, tmp_path: Path, data_dir: Path, client_config: Path, name: str) -> None:
        self.data_dir = data_dir
        self.client_config = client_config
        self.log = tmp_path / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
        env.update(XDG_CONFIG_HOME=str(tmp_path / "xdg"), XDG_DATA_HOME=str(tmp_path / "share"))
        self.env = env
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pilotwms.cli.main",
                    "up",
                    "--data-dir",
                    str(data_dir),
                    "--port",
                    "0",
                    "--pilots",
                    "2",
                    "--cores",
                    "1",
                    "--client-config",
                    str(client_config),
                    "--grace",
                    "20",
                ],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> str:
        def ready() -> str | None:
            assert self.process.poll() is None, f"pilotwms up exited:\n{self.output()}"
            try:
                url = str(json.loads((self.data_dir / STATE_FILE).read_text())["url"])
                if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                    return url
            except (OSError, ValueError, KeyError, httpx.TransportError):
                pass
            return None

        return str(wait_for(ready, READY_DEADLINE_S, "pilotwms up answers its health check"))

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"pilotwms up did not stop:\n{self.output()}") from None


@pytest.fixture
def services() -> Iterator[list[Up]]:
    """Whatever a test started is stopped even when it fails half-way."""
    started: list[Up] = []
    yield started
    for up in started:
        if up.process.poll() is None:
            up.stop(signal.SIGTERM)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_up_runs_jobs_on_its_pilots_and_leaves_nothing_behind(
    tmp_path: Path, services: list[Up]
) -> None:
    data_dir = tmp_path / "data"
    up = Up(tmp_path, data_dir, tmp_path / "client.toml", "first")
    services.append(up)
    url = up.wait_ready()

    credentials = json.loads((data_dir / CREDENTIALS_FILE).read_text())
    assert mode(data_dir / CREDENTIALS_FILE) == 0o600
    assert mode(up.client_config) == 0o600
    config = up.client_config.read_text()
    assert f'url = "{url}"' in config
    assert f'token = "{credentials["admin_token"]}"' in config
    assert f"client configuration written to {up.client_config}" in up.output()
    assert "Ctrl-C" in up.output()

    # The client configuration is all the client needs.
    env = {**up.env, "PILOTWMS_CONFIG": str(up.client_config)}
    with Client.from_config(env=env) as client:
        job = client.submit(EXAMPLES / "hello.jdl")
        status = job.wait(timeout=120)
        assert status.succeeded, status.describe()
        job.output(tmp_path / "out")
        assert (tmp_path / "out" / "greeting.txt").read_text() == "greeting for pilotwms\n"
        pilots = wait_for(
            lambda: [p for p in client.pilots(state=["running", "idle"]) if p.batch_job_id],
            60,
            "both pilots registered",
        )
    assert isinstance(pilots, list) and len(pilots) == 2
    sessions = [int(str(p.batch_job_id).partition("-")[0]) for p in pilots]
    processes = {pid: start_time(pid) for pid in processes_of(sessions)}
    assert len(processes) >= 4, processes  # a wrapper and an agent per pilot

    # One up per data directory.
    second = subprocess.run(
        [sys.executable, "-m", "pilotwms.cli.main", "up", "--data-dir", str(data_dir)],
        env=up.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 1 and "another pilotwms up" in second.stderr

    assert up.stop(signal.SIGINT) == 0, up.output()
    assert "pilotwms up stopped" in up.output()
    left = {pid for pid, started in processes.items() if start_time(pid) == started}
    assert not left, f"processes left behind: {left}"
    assert not processes_of(sessions)
    assert not (data_dir / STATE_FILE).exists()

    # A second start reuses the admin user and token.
    again = Up(tmp_path, data_dir, tmp_path / "client2.toml", "second")
    services.append(again)
    again.wait_ready()
    assert json.loads((data_dir / CREDENTIALS_FILE).read_text()) == credentials
    assert f'token = "{credentials["admin_token"]}"' in again.client_config.read_text()
    assert again.stop(signal.SIGTERM) == 0, again.output()


@pytest.mark.slow
def test_up_restarts_a_pilot_that_dies(tmp_path: Path, services: list[Up]) -> None:
    data_dir = tmp_path / "data"
    up = Up(tmp_path, data_dir, tmp_path / "client.toml", "up")
    services.append(up)
    up.wait_ready()
    first = json.loads((data_dir / STATE_FILE).read_text())["pilots"]
    assert len(first) == 2
    victim = int(first[0].partition("-")[0])
    os.killpg(victim, signal.SIGKILL)

    def replaced() -> list[str] | None:
        pilots = json.loads((data_dir / STATE_FILE).read_text())["pilots"]
        return pilots if len(pilots) == 2 and first[0] not in pilots else None

    now = wait_for(replaced, 60, "the killed pilot is replaced")
    assert isinstance(now, list) and first[1] in now
    assert "ended" in up.output()
    sessions = [int(i.partition("-")[0]) for i in now]
    assert up.stop(signal.SIGINT) == 0, up.output()
    assert not processes_of(sessions)
