"""The pilot factory end to end: a real server, the factory daemon in a thread, real pilots
(local processes, or real Slurm jobs), real jobs.

- Slurm (skipped unless ``PILOTWMS_TEST_SLURM`` is set, as ``make test`` does): jobs that need a
  tag only the Slurm queue has bring Slurm pilots, run DONE, and the pilots leave the batch
  queue after ``wait_term``; a queue whose ad cannot match gets no pilot.
- Rolling upgrade on the local backend: a new agent is installed while jobs run; every job ends
  DONE, the old pilots drain and end, pilots of the new version replace them.
- ``factory cancel-pilots`` while jobs run: every job still ends DONE after a shallow retry.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import status, submit
from typer.testing import CliRunner

from pilot_client import wait_for
from pilotwms.factory.backends import LocalBackend
from pilotwms.factory.config import FactoryConfig, parse_factory_config
from pilotwms.factory.daemon import Factory
from pilotwms.factory.server_api import ServerApi
from pilotwms.factory.state import StateLock
from wms_server import RunningServer

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="local pilots need Linux /proc"
)

#: Local pilots drain fast: jobs get 1 s after the pilot's SIGTERM.
FAST_DRAIN = {"PILOTWMS_SIGTERM_GRACE": "1", "PILOTWMS_CANCEL_GRACE": "1"}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"


def _write_config(path: Path, data: dict[str, Any]) -> None:
    lines = ["[factory]"]
    lines += [f"{k} = {_toml(v)}" for k, v in data["factory"].items()]
    for name, queue in data["queues"].items():
        lines.append(f"[queues.{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in queue.items()]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class RunningFactory:
    factory: Factory
    config: FactoryConfig
    config_file: Path

    def cli(self, *args: str) -> str:
        from pilotwms.cli.main import app

        result = CliRunner().invoke(app, ["factory", *args, "--config", str(self.config_file)])
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture(scope="module")
def admin_token(e2e_server: RunningServer) -> str:
    return e2e_server.token(e2e_server.add_user("factory-admin", admin=True), "admin")


@pytest.fixture
def admin(e2e_server: RunningServer, admin_token: str) -> httpx.Client:
    return e2e_server.client(admin_token)


@contextlib.contextmanager
def running_factory(
    server: RunningServer, token: str, state_dir: Path, queues: dict[str, Any]
) -> Iterator[RunningFactory]:
    """The daemon in a thread, holding its state lock as ``factory run`` does; on exit it
    stops and every pilot it left is stopped too."""
    data = {
        "factory": {"server_url": server.base_url, "state_dir": str(state_dir), "name": "e2e"},
        "queues": queues,
    }
    config = parse_factory_config(data)
    config_file = state_dir.parent / f"{state_dir.name}.toml"
    _write_config(config_file, data)
    api = ServerApi(server.base_url, token)
    stop = threading.Event()
    with StateLock(state_dir):
        factory = Factory(config, api, agent_url=api.agent_url)
        thread = threading.Thread(target=factory.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield RunningFactory(factory, config, config_file)
        finally:
            stop.set()
            thread.join(60)
            for q in factory.queues.values():
                ids = [r.batch_id for r in factory.state.live(q.name)]
                if isinstance(q.backend, LocalBackend):
                    q.backend.terminate(ids, 10.0)
                elif ids:
                    q.backend.cancel(ids)
            api.close()


def _local_queue(site: str, **extra: Any) -> dict[str, Any]:
    queue: dict[str, Any] = {
        "backend": "local",
        "poll": 0.5,
        "wait_new": 0,
        "wait_term": 3,
        "sched_max": 2,
        "ad": {"cores": 1, "memory_mb": 1000, "site": site},
        "options": {"environment": FAST_DRAIN},
    }
    queue.update(extra)
    return queue


def _sleep_jobs(user: httpx.Client, site: str, count: int, seconds: float) -> list[int]:
    jdl = (
        f'[ Executable = "/bin/sh"; Arguments = "-c \\"sleep {seconds}; echo done\\"";'
        f' StdOutput = "out.txt"; OutputSandbox = {{"out.txt"}};'
        f' Requirements = other.GlueSiteName == "{site}"; ]'
    )
    return [submit(user, jdl)["id"] for _ in range(count)]


def _all_done(user: httpx.Client, jobs: list[int]) -> bool:
    states = [status(user, job) for job in jobs]
    failed = [s for s in states if s["state"] in ("ABORTED", "CANCELLED")]
    assert not failed, failed
    return all(s["state"] == "DONE" and s.get("exit_code") == 0 for s in states)


def _pilots(user: httpx.Client, queue: str) -> list[dict[str, Any]]:
    found = user.get("/api/v1/pilots").json()["pilots"]
    return [p for p in found if p.get("queue") == queue]


def test_cancel_pilots_while_jobs_run_requeues_and_every_job_ends_done(
    e2e_server: RunningServer, admin_token: str, user: httpx.Client, tmp_path: Path, site: str
) -> None:
    with running_factory(
        e2e_server, admin_token, tmp_path / "factory", {"cancelq": _local_queue(site)}
    ) as running:
        jobs = _sleep_jobs(user, site, 4, 5)
        wait_for(
            lambda: sum(status(user, j)["state"] == "RUNNING" for j in jobs) >= 2,
            timeout=120,
            what="two jobs running on factory pilots",
        )
        out = running.cli("cancel-pilots", "--queue", "cancelq")
        assert "cancelled 2 pilot(s)" in out and "requeued" in out
        wait_for(lambda: _all_done(user, jobs), timeout=180, what="every job DONE")
    matches = [
        sum(e["event"] == "Match" for e in user.get(f"/api/v1/jobs/{j}/events").json()["events"])
        for j in jobs
    ]
    assert max(matches) >= 2, matches  # the jobs the cancelled pilots ran were run again
    assert len(_pilots(user, "cancelq")) >= 3  # replacements were submitted


def test_rolling_upgrade_drains_old_pilots_and_replaces_them_with_the_new_agent(
    e2e_server: RunningServer,
    admin_token: str,
    admin: httpx.Client,
    user: httpx.Client,
    tmp_path: Path,
    site: str,
) -> None:
    from pilotwms.agent import AGENT_VERSION
    from pilotwms.agent.zipapp import build_zipapp

    new_version = f"{AGENT_VERSION}+up{uuid.uuid4().hex[:6]}"
    zipapp = tmp_path / "agent-new.pyz"
    assert build_zipapp(zipapp, version=new_version) == new_version
    with running_factory(
        e2e_server, admin_token, tmp_path / "factory", {"upgradeq": _local_queue(site)}
    ):
        jobs = _sleep_jobs(user, site, 6, 3)
        wait_for(
            lambda: any(status(user, j)["state"] == "RUNNING" for j in jobs),
            timeout=120,
            what="jobs running on old pilots",
        )
        old = {p["id"] for p in _pilots(user, "upgradeq")}
        reply = admin.put("/api/v1/admin/agent", content=zipapp.read_bytes())
        assert reply.status_code == 200, reply.text
        try:
            wait_for(lambda: _all_done(user, jobs), timeout=180, what="every job DONE")
            pilots = _pilots(user, "upgradeq")
            new = [p for p in pilots if p.get("version") == new_version]
            assert new, pilots  # replacements run the new agent
            wait_for(
                lambda: all(
                    p["state"] not in ("running", "idle", "busy", "draining", "submitted")
                    for p in _pilots(user, "upgradeq")
                    if p["id"] in old
                ),
                timeout=120,
                what="old pilots to end",
            )
        finally:
            # Put the stock agent back for the other tests of this module's server.
            build_zipapp(zipapp, version=AGENT_VERSION)
            admin.put("/api/v1/admin/agent", content=zipapp.read_bytes())


def _slurm_unavailable() -> str | None:
    if not os.environ.get("PILOTWMS_TEST_SLURM"):
        return "PILOTWMS_TEST_SLURM is not set: the real Slurm that 'make test' starts is needed"
    try:
        ping = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"slurmctld is not answering 'scontrol ping': {exc}"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"slurmctld is not answering 'scontrol ping': {ping.stdout} {ping.stderr}"
    return None


@pytest.mark.slurm
def test_slurm_pilots_run_the_jobs_only_they_can_and_leave_after_wait_term(
    e2e_server: RunningServer, admin_token: str, user: httpx.Client, tmp_path: Path, site: str
) -> None:
    unavailable = _slurm_unavailable()
    if unavailable:
        pytest.skip(reason=unavailable)
    tag = f"only-slurm-{uuid.uuid4().hex[:8]}"
    queues = {
        "slurm-e2e": {
            "backend": "slurm",
            "poll": 0.5,
            "wait_new": 0,
            "wait_term": 3,
            "sched_max": 2,
            "ad": {"cores": 1, "memory_mb": 200, "walltime_s": 600, "site": site, "tags": [tag]},
            # The pilots fetch the agent zipapp from the server with their pilot token.
            "options": {
                "python": sys.executable,
                "environment": {"PILOTWMS_WORK_DIR": str(tmp_path / "work")},
            },
        },
        "elsewhere": _local_queue(site, sched_max=4),
    }
    jdl = (
        '[ Executable = "/bin/sh"; Arguments = "-c \\"echo ran\\""; StdOutput = "out.txt";'
        ' OutputSandbox = {"out.txt"};'
        f' Requirements = Member("{tag}", other.GlueHostApplicationSoftwareRunTimeEnvironment); ]'
    )
    jobs = [submit(user, jdl)["id"] for _ in range(20)]
    with running_factory(e2e_server, admin_token, tmp_path / "factory", queues) as running:
        wait_for(lambda: _all_done(user, jobs), timeout=240, what="20 jobs DONE on Slurm pilots")
        slurm_ids = {p["batch_job_id"] for p in _pilots(user, "slurm-e2e")}
        assert slurm_ids and all(i and i.isdigit() for i in slurm_ids)

        def squeue_empty() -> bool:
            done = subprocess.run(
                ["squeue", "-h", "-o", "%i", "-j", ",".join(sorted(slurm_ids))],
                capture_output=True,
                text=True,
                check=False,
            )
            return not (set(done.stdout.split()) & slurm_ids)

        wait_for(squeue_empty, timeout=120, what="the Slurm pilots to exit after wait_term")
        assert running.factory.queues["slurm-e2e"].limiter.start_failures == 0
        # The pilots' own logs reach the server once they end: `pilotwms pilots log ID`.
        first = min(_pilots(user, "slurm-e2e"), key=lambda p: int(p["id"]))
        wait_for(
            lambda: (
                "registered as pilot"
                in user.get(f"/api/v1/pilots/{first['id']}/log", params={"stream": "stderr"}).text
            ),
            timeout=60,
            what="the pilot's log on the server",
        )
        status_out = running.cli("status")
        assert "queue slurm-e2e (slurm" in status_out
    assert not _pilots(user, "elsewhere")  # no job could run there: no pilot was submitted
    assert not running.factory.state.of_queue("elsewhere")


@pytest.mark.slurm
def test_slurm_cancel_pilots_drains_the_agents_and_every_job_ends_done(
    e2e_server: RunningServer, admin_token: str, user: httpx.Client, tmp_path: Path, site: str
) -> None:
    """Only the agent gets the SIGTERM (a plain scancel would kill the jobs with it)."""
    unavailable = _slurm_unavailable()
    if unavailable:
        pytest.skip(reason=unavailable)
    queues = {
        "slurm-cancel": {
            "backend": "slurm",
            "poll": 0.5,
            "wait_new": 0,
            "wait_term": 3,
            "sched_max": 2,
            "ad": {"cores": 1, "memory_mb": 200, "walltime_s": 600, "site": site},
            "options": {
                "python": sys.executable,
                "environment": {**FAST_DRAIN, "PILOTWMS_WORK_DIR": str(tmp_path / "work")},
            },
        },
    }
    with running_factory(e2e_server, admin_token, tmp_path / "factory", queues) as running:
        jobs = _sleep_jobs(user, site, 4, 6)
        wait_for(
            lambda: sum(status(user, j)["state"] == "RUNNING" for j in jobs) >= 2,
            timeout=120,
            what="two jobs running on Slurm pilots",
        )
        assert "cancelled 2 pilot(s)" in running.cli("cancel-pilots")
        wait_for(lambda: _all_done(user, jobs), timeout=180, what="every job DONE")
    events = [
        [e["event"] for e in user.get(f"/api/v1/jobs/{j}/events").json()["events"]] for j in jobs
    ]
    assert sum("Resubmission" in e for e in events) >= 2, events
    drained = [
        p
        for p in _pilots(user, "slurm-cancel")
        if p.get("reason") == "SIGTERM from the batch system"
    ]
    assert len(drained) == 2
