"""Real agents when things go wrong: a pilot killed with SIGKILL, a cancel, a wall-clock limit,
and the server restarted under a running job."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import E2E_SETTINGS, AgentFactory, site_jdl, status, submit

from pilot_client import ProtocolPilot, wait_for
from wms_server import RunningServer, fresh_database, make_settings, start_server


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


@pytest.fixture
def pid_dir(tmp_path: Path) -> Iterator[Path]:
    """Where jobs write their process ids; leftovers are killed at the end."""
    directory = tmp_path / "pids"
    directory.mkdir()
    yield directory
    for file in directory.iterdir():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(file.read_text().strip()), signal.SIGKILL)


def events_of(user: httpx.Client, job: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = user.get(f"/api/v1/jobs/{job}/events").json()["events"]
    return events


def pid_of(pid_dir: Path, name: str) -> int | None:
    path = pid_dir / name
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def test_killed_pilot_job_is_requeued_within_lease_and_its_late_report_is_refused(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
    pid_dir: Path,
) -> None:
    script = (
        f"echo $$ > {pid_dir}/pid.$PILOTWMS_ATTEMPT;"
        " if [ $PILOTWMS_ATTEMPT = 1 ]; then exec sleep 300; fi; echo rerun ok"
    )
    job = submit(
        user,
        site_jdl(
            site,
            f'Executable = "/bin/sh"; Arguments = "-c \\"{script}\\""; StdOutput = "out";'
            ' OutputSandbox = {"out"};',
        ),
    )["id"]
    doomed = start_agent(e2e_server.base_url, pilot_token, site)
    wait_for(lambda: pid_of(pid_dir, "pid.1"), timeout=60, what="the first attempt running")
    # The deep retry below needs the server to know the payload started: the agent reports it
    # asynchronously, so wait for its ReallyRunning event rather than the RUNNING state (a kill
    # before that report arrives is, rightly, a shallow retry).
    wait_for(
        lambda: any(e["event"] == "ReallyRunning" for e in events_of(user, job)),
        timeout=30,
        what="the payload start reported",
    )
    start_agent(e2e_server.base_url, pilot_token, site)
    doomed.kill()
    killed_at = time.monotonic()
    wait_for(lambda: status(user, job)["attempt"] == 2, timeout=60, what="the requeue")
    lease = E2E_SETTINGS["lease_timeout_s"]
    # The lease plus the lease task's period, with room for a slow machine.
    assert time.monotonic() - killed_at < lease + 15
    wait_for(lambda: status(user, job)["state"] == "DONE", timeout=60, what="the rerun")
    final = status(user, job)
    assert (final["done_code"], final["exit_code"], final["retries_used"]) == ("ok", 0, 1)
    assert user.get(f"/api/v1/jobs/{job}/output/out").text == "rerun ok\n"
    # The dead pilot's attempt reports late (a zombie that came back): refused, nothing changes.
    zombie = ProtocolPilot(e2e_server, pilot_token, tag="zombie")
    late = zombie.report(
        {"job_id": str(job), "attempt": 1}, "finished", status="failed", exit_code=1
    )
    assert late["outcome"] == "stale"
    assert status(user, job)["state"] == "DONE" and status(user, job)["exit_code"] == 0
    resubmission = next(e for e in events_of(user, job) if e["event"] == "Resubmission")
    assert "lost the job" in resubmission["reason"] and "deep" in resubmission["reason"]


def test_cancel_of_a_running_job_kills_its_processes(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
    pid_dir: Path,
) -> None:
    job = submit(
        user,
        site_jdl(
            site,
            'Executable = "/bin/sh";'
            f' Arguments = "-c \\"echo $$ > {pid_dir}/pid; exec sleep 300\\"";',
        ),
    )["id"]
    start_agent(e2e_server.base_url, pilot_token, site)
    pid = wait_for(lambda: pid_of(pid_dir, "pid"), timeout=60, what="the job running")
    wait_for(lambda: status(user, job)["state"] == "RUNNING", timeout=30, what="RUNNING")
    reply = user.post(f"/api/v1/jobs/{job}/cancel")
    assert reply.status_code == 200 and reply.json()["cancel_requested"] == [job]
    wait_for(lambda: status(user, job)["state"] == "CANCELLED", timeout=60, what="CANCELLED")
    wait_for(lambda: not alive(pid), timeout=30, what="the job's process gone")


def test_job_over_its_wall_clock_limit_is_killed_and_reported(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
    pid_dir: Path,
) -> None:
    job = submit(
        user,
        site_jdl(
            site,
            'Executable = "/bin/sh"; MaxWallTime = 2;'
            f' Arguments = "-c \\"echo $$ > {pid_dir}/pid; exec sleep 300\\"";',
        ),
    )["id"]
    start_agent(e2e_server.base_url, pilot_token, site)
    wait_for(lambda: status(user, job)["state"] == "DONE", timeout=90, what="job killed")
    final = status(user, job)
    assert final["done_code"] == "failed"
    assert "wall-clock limit of 2 s exceeded" in final["reason"]
    pid = pid_of(pid_dir, "pid")
    assert pid is not None and not alive(pid)


def test_server_restarted_while_a_job_runs_accepts_its_report(
    tmp_path_factory: pytest.TempPathFactory, start_agent: AgentFactory, site: str, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    with fresh_database("sqlite", tmp_path_factory.mktemp("restart-db")) as database:
        # A lease long enough to outlast the agent's back-off while the server is away.
        settings = make_settings(
            database,
            tmp_path_factory.mktemp("restart-server"),
            **{**E2E_SETTINGS, "lease_timeout_s": 60.0},
        )
        first = start_server(settings)
        port = int(first.base_url.rsplit(":", 1)[1])
        token = first.token(first.add_user("factory"), "pilot")
        user_token = first.token(first.add_user("someone"))
        user = first.client(user_token)
        job = submit(
            user,
            site_jdl(
                site,
                'Executable = "/bin/sh";'
                f' Arguments = "-c \\"while [ ! -f {flag} ]; do sleep 0.1; done; echo after\\"";',
            ),
        )["id"]
        agent = start_agent(first.base_url, token, site)
        wait_for(lambda: status(user, job)["state"] == "RUNNING", timeout=60, what="RUNNING")
        first.stop()
        flag.touch()  # the job ends while the server is away or just back
        second = start_server(settings, port=port)
        try:
            again = second.client(user_token)
            wait_for(lambda: status(again, job)["state"] == "DONE", timeout=90, what="DONE")
            final = status(again, job)
            assert (final["done_code"], final["exit_code"], final["attempt"]) == ("ok", 0, 1)
        finally:
            agent.stop()
            second.stop()
