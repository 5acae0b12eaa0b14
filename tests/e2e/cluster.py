"""The pieces of an end-to-end run: pilot agents as subprocesses, JDL pinned to a site, and
submission and status calls over the user API."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

#: Short protocol timings so that lost pilots are noticed within seconds.
E2E_SETTINGS: dict[str, Any] = {
    "heartbeat_interval_s": 0.5,
    "lease_timeout_s": 3.0,
    "work_max_wait_s": 1.0,
    "task_queue_resync_s": 1.0,
}


@dataclass
class Agent:
    """A pilot agent subprocess and where it logs."""

    process: subprocess.Popen[bytes]
    work_dir: Path
    log: Path
    site: str

    def kill(self) -> None:
        """SIGKILL, no goodbye: the server learns of it only through the lease."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


#: ``start_agent(url, token, site, **options)``: the fixture that starts agents for a test.
AgentFactory = Callable[..., "Agent"]


def launch_agent(
    url: str,
    token: str,
    site: str,
    work_dir: Path,
    log: Path,
    *,
    cores: int = 2,
    wait_term: float = 30.0,
    **extra: Any,
) -> Agent:
    """``python -m pilotwms.agent`` for ``url`` publishing ``site``; extra keyword arguments
    become options (``max_jobs=1`` is ``--max-jobs 1``)."""
    command = [
        sys.executable,
        "-m",
        "pilotwms.agent",
        "--server",
        url,
        "--token",
        token,
        "--work-dir",
        str(work_dir),
        "--wait-term",
        str(wait_term),
        "--cores",
        str(cores),
        "--memory-mb",
        "4000",
        "--site",
        site,
        "--queue",
        "e2e",
        "--cancel-grace",
        "1",
    ]
    for name, value in extra.items():
        command += ["--" + name.replace("_", "-"), str(value)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    return Agent(process, work_dir, log, site)


def site_jdl(site: str, body: str) -> str:
    """``body`` with Requirements that only pilots of ``site`` satisfy."""
    return f'[ {body} Requirements = other.GlueSiteName == "{site}"; ]'


def submit(client: httpx.Client, jdl: str, files: dict[str, bytes] | None = None) -> dict:
    if files:
        reply = client.post(
            "/api/v1/jobs",
            data={"jdl": jdl},
            files={name: (name, content) for name, content in files.items()},
        )
    else:
        reply = client.post("/api/v1/jobs", json={"jdl": jdl})
    assert reply.status_code == 201, reply.text
    result: dict = reply.json()
    return result


def status(client: httpx.Client, job_id: int | str) -> dict:
    reply = client.get(f"/api/v1/jobs/{job_id}")
    assert reply.status_code == 200, reply.text
    result: dict = reply.json()
    return result
