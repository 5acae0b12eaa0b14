"""The rolling upgrade with real agents: installing a new agent while a job runs drains the old
pilot after its job (which ends DONE, never killed), and a pilot running the new zipapp takes
the next job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from cluster import AgentFactory, site_jdl, status, submit

from pilot_client import wait_for
from pilotwms.agent import AGENT_VERSION
from pilotwms.agent.zipapp import build_zipapp
from wms_server import RunningServer

NEW = "9.5.0"


def test_upgrade_drains_the_old_agent_after_its_job_and_the_new_agent_runs_the_next(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    site: str,
    start_agent: AgentFactory,
    tmp_path: Path,
) -> None:
    admin = e2e_server.user_client(admin=True)
    old = start_agent(e2e_server.base_url, pilot_token, site, wait_term=60)
    first = submit(user, site_jdl(site, 'Executable = "/bin/sleep"; Arguments = "3";'))["id"]
    wait_for(
        lambda: status(user, first)["state"] == "RUNNING", timeout=60, what="the first job runs"
    )
    (pilot,) = [p for p in admin.get("/api/v1/pilots").json()["pilots"] if p["queue"] == "e2e"]
    assert pilot["version"] == AGENT_VERSION

    zipapp = tmp_path / "agent.pyz"
    build_zipapp(zipapp, version=NEW)
    reply = admin.put("/api/v1/admin/agent", content=zipapp.read_bytes())
    assert reply.status_code == 200, reply.text

    # The old pilot drains: its job ends DONE, then it deregisters with the upgrade's reason.
    done = wait_for(
        lambda: status(user, first)["state"] == "DONE" and status(user, first),
        timeout=60,
        what="the first job DONE",
    )
    assert done["exit_code"] == 0 and done["retries_used"] == 0
    ended = wait_for(
        lambda: (
            (p := admin.get(f"/api/v1/pilots/{pilot['id']}").json())["state"] == "finished" and p
        ),
        timeout=60,
        what="the old pilot deregistered",
    )
    assert ended["reason"] == f"agent upgrade: {AGENT_VERSION} -> {NEW}"
    assert old.process.wait(timeout=60) == 0

    # A pilot started from the zipapp the server now serves takes the next job.
    served = e2e_server.client(pilot_token).get("/api/v1/pilot/agent.pyz")
    fetched = tmp_path / "served.pyz"
    fetched.write_bytes(served.content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
    log = tmp_path / "new-agent.log"
    command = [
        sys.executable,
        str(fetched),
        "--server",
        e2e_server.base_url,
        "--token",
        pilot_token,
        "--work-dir",
        str(tmp_path / "new-agent"),
        "--wait-term",
        "60",
        "--cores",
        "1",
        "--site",
        site,
        "--queue",
        "e2e",
    ]
    with log.open("wb") as sink:
        new = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        second = submit(user, site_jdl(site, 'Executable = "/bin/true";'))["id"]
        wait_for(
            lambda: status(user, second)["state"] == "DONE",
            timeout=60,
            what=f"the second job DONE on the new agent ({log})",
        )
        pilots = admin.get("/api/v1/pilots", params={"state": ["idle", "running"]}).json()
        assert [p["version"] for p in pilots["pilots"] if p["site"] == site] == [NEW]
    finally:
        new.terminate()
        new.wait(timeout=60)
