"""DAGs and large compound jobs on real agents: order, failure, ``max_nodes_running``, rescue
with ``pilotwms resubmit``, 1,000 nodes, and a server killed with SIGKILL mid-DAG.

Order and exclusion are read from the event history (server clock): a node's ``Running`` is
recorded when its pilot's report arrives, after the hand-out, which is after the commit that
released the node, which is the commit of its parents' ``Done``.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from cluster import E2E_SETTINGS, AgentFactory, status, submit
from typer.testing import CliRunner

from pilot_client import wait_for
from pilotwms.cli.main import app as cli_app
from wms_server import RunningServer, fresh_database, make_settings

FINAL = ("DONE", "ABORTED", "CANCELLED")


def dag_jdl(
    site: str,
    nodes: dict[str, str],
    edges: list[tuple[str, str]],
    *,
    limit: int | None = None,
) -> str:
    """A DAG whose node ``name`` runs ``/bin/sh -c script`` on ``site``'s pilots."""
    req = f'other.GlueSiteName == "{site}"'
    described = "".join(
        f'{name} = [ description = [ Executable = "/bin/sh"; Arguments = "-c \\"{script}\\"";'
        f" Requirements = {req}; ]; ];"
        for name, script in nodes.items()
    )
    deps = ", ".join(f"{{{a}, {b}}}" for a, b in edges)
    throttle = f"max_nodes_running = {limit};" if limit is not None else ""
    return f'[ Type = "dag"; {throttle} nodes = [ {described} ]; dependencies = {{ {deps} }}; ]'


def events(client: httpx.Client, job_id: int) -> list[dict]:
    reply = client.get(f"/api/v1/jobs/{job_id}/events")
    assert reply.status_code == 200, reply.text
    found: list[dict] = reply.json()["events"]
    return found


def _at(event: dict) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def run_interval(client: httpx.Client, job_id: int) -> tuple[float, float]:
    """(start, end) of the node's last run: its ``Running`` (or ``Match`` when the end
    overtook it) and its ``Done``."""
    history = events(client, job_id)
    starts = [e for e in history if e["event"] in ("Running", "Match")]
    done = [e for e in history if e["event"] == "Done"]
    assert starts and done, history
    running = [e for e in starts if e["event"] == "Running" and e["attempt"] == done[-1]["attempt"]]
    return _at((running or starts)[-1]), _at(done[-1])


def wait_final(client: httpx.Client, job_id: int, timeout: float = 90) -> dict:
    wait_for(
        lambda: (
            client.get(f"/api/v1/jobs/{job_id}", params={"nodes": "false"}).json()["state"] in FINAL
        ),
        timeout=timeout,
        what=f"job {job_id} finished",
    )
    return status(client, job_id)


#: A -> B, C -> D: the issue's diamond.
DIAMOND = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]


def node_ids(result: dict) -> dict[str, int]:
    return {n["name"]: n["id"] for n in result["nodes"]}


def test_diamond_runs_in_dependency_order(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    nodes = dict.fromkeys("abcd", "true")
    result = submit(user, dag_jdl(site, nodes, DIAMOND))
    ids = node_ids(result)
    start_agent(e2e_server.base_url, pilot_token, site, cores=2)
    final = wait_final(user, result["id"])
    assert (final["state"], final["done_code"]) == ("DONE", "ok")
    span = {name: run_interval(user, i) for name, i in ids.items()}
    for parent, child in DIAMOND:
        assert span[parent][1] <= span[child][0], (parent, child, span)


def test_a_failing_node_aborts_its_descendants_not_the_other_branch(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    nodes = {"a": "true", "b": "exit 3", "c": "true", "d": "true"}
    result = submit(user, dag_jdl(site, nodes, DIAMOND))
    ids = node_ids(result)
    start_agent(e2e_server.base_url, pilot_token, site, cores=2)
    final = wait_final(user, result["id"])
    assert final["state"] == "ABORTED"
    by_name = {n["name"]: n for n in final["nodes"]}
    assert (by_name["b"]["state"], by_name["b"]["exit_code"]) == ("DONE", 3)
    assert (by_name["c"]["state"], by_name["c"]["exit_code"]) == ("DONE", 0)
    d = status(user, ids["d"])
    assert (d["state"], d["reason"]) == ("ABORTED", "parent b failed")


def test_max_nodes_running_one_never_overlaps_two_nodes(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    names = [f"n{i}" for i in range(5)]
    nodes = dict.fromkeys([*names, "z"], "sleep 0.2")
    result = submit(user, dag_jdl(site, nodes, [(n, "z") for n in names], limit=1))
    ids = node_ids(result)
    start_agent(e2e_server.base_url, pilot_token, site, cores=4)
    final = wait_final(user, result["id"])
    assert (final["state"], final["done_code"]) == ("DONE", "ok")
    spans = sorted(run_interval(user, i) for i in ids.values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans


def test_a_thousand_node_parametric_job_completes(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    jdl = (
        f'[ JobType = "Parametric"; Executable = "/bin/true"; Parameters = 1000;'
        f' Requirements = other.GlueSiteName == "{site}"; ]'
    )
    result = submit(user, jdl)
    start_agent(e2e_server.base_url, pilot_token, site, cores=2)
    final = wait_final(user, result["id"], timeout=180)
    assert (final["state"], final["done_code"]) == ("DONE", "ok")
    assert final["children"]["total"] == 1000
    assert final["children"]["states"] == {"DONE": 1000}


def test_resubmit_reruns_only_the_failed_branch(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "second-time"
    # b fails the first time (leaving the marker), succeeds the second.
    flaky = f"if [ -f {marker} ]; then exit 0; fi; touch {marker}; exit 1"
    nodes = {"a": "true", "b": flaky, "c": "true", "d": "true"}
    result = submit(user, dag_jdl(site, nodes, DIAMOND))
    top, ids = result["id"], node_ids(result)
    start_agent(e2e_server.base_url, pilot_token, site, cores=2)
    assert wait_final(user, top)["state"] == "ABORTED"

    token = user.headers["Authorization"].split()[1]
    env = {
        "PILOTWMS_URL": e2e_server.base_url,
        "PILOTWMS_TOKEN": token,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "PILOTWMS_CONFIG": "",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    said = runner.invoke(cli_app, ["resubmit", str(top)], env=env)
    assert said.exit_code == 0, said.output
    assert f"job {top}: resubmitted 2 node(s)" in said.stdout and "2 kept" in said.stdout
    final = wait_final(user, top)
    assert (final["state"], final["done_code"]) == ("DONE", "ok")
    attempts = {name: status(user, i)["attempt"] for name, i in ids.items()}
    assert attempts == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert [e["event"] for e in events(user, ids["d"])].count("UserResubmission") == 1
    assert "UserResubmission" not in [e["event"] for e in events(user, ids["c"])]
    again = runner.invoke(cli_app, ["resubmit", str(top)], env=env)
    assert again.exit_code == 3 and "nothing to resubmit" in again.output

    shown = runner.invoke(cli_app, ["status", str(top), "-v", "2"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "dependencies: 4 edges, 3 levels; roots: a; leaves: d" in shown.stdout
    line_a = next(line for line in shown.stdout.splitlines() if line.startswith("a "))
    assert line_a.split()[-2:] == ["c", "-"]  # children "b, c", no parents


# -- a server killed with SIGKILL --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``pilotwms server`` as its own process, so that it can be killed without a goodbye."""

    def __init__(self, settings: object, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
        # A lease long enough to outlast the agent's back-off while the server is away.
        protocol = {**E2E_SETTINGS, "lease_timeout_s": 60.0}
        self.env.update({f"PILOTWMS_{k.upper()}": str(v) for k, v in protocol.items()})
        self.env.update(
            PILOTWMS_DATA_DIR=str(settings.data_dir),  # type: ignore[attr-defined]
            PILOTWMS_DATABASE_URL=settings.database_url,  # type: ignore[attr-defined]
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pilotwms.cli.main", "server", "--port", str(self.port)],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

        def up() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/api/v1/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=60, what="server up")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, str]]:
    """A server process on SQLite, with a user token and a pilot token."""
    from pilotwms.server.app import prepare_database
    from pilotwms.server.db import Database
    from pilotwms.server.logic.accounts import Role, create_token, create_user

    with fresh_database("sqlite", tmp_path / "db") as database:
        settings = make_settings(database, tmp_path / "server")
        db = Database(settings.effective_database_url, pool_size=1)
        prepare_database(settings, db)
        with db.write() as conn:
            create_user(conn, "dagger", "g-dagger")
            create_user(conn, "factory", "g-factory")
            user_token = create_token(conn, "dagger", role=Role.USER, lifetime=None).token
            pilot_token = create_token(conn, "factory", role=Role.PILOT, lifetime=None).token
        db.dispose()
        server = ServerProcess(settings, tmp_path / "server.log")
        server.start()
        try:
            yield server, user_token, pilot_token
        finally:
            server.kill()


def test_a_dag_survives_a_server_killed_mid_run(
    killable: tuple[ServerProcess, str, str],
    start_agent: AgentFactory,
    site: str,
    tmp_path: Path,
) -> None:
    server, user_token, pilot_token = killable
    runs = tmp_path / "runs"
    runs.mkdir()
    names = ["a", "b1", "b2", "b3", "c", "d1", "d2", "e"]
    nodes = {n: f"echo ran >> {runs / n}; sleep 0.4" for n in names}
    edges = [("a", b) for b in ("b1", "b2", "b3")] + [(b, "c") for b in ("b1", "b2", "b3")]
    edges += [("c", "d1"), ("c", "d2"), ("d1", "e"), ("d2", "e")]
    user = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {user_token}"}, timeout=60
    )
    with user:
        result = submit(user, dag_jdl(site, nodes, edges, limit=2))
        top, ids = result["id"], node_ids(result)
        start_agent(server.url, pilot_token, site, cores=2)
        wait_for(lambda: status(user, ids["c"])["state"] == "RUNNING", timeout=90, what="c runs")
        server.kill()  # c ends while the server is away; its report waits in the pilot
        server.start()
        final = wait_final(user, top, timeout=120)
        assert (final["state"], final["done_code"]) == ("DONE", "ok")
        for name in names:  # every node ran, and ran once
            assert (runs / name).read_text() == "ran\n", name
        span = {name: run_interval(user, i) for name, i in ids.items()}
        for parent, child in edges:
            assert span[parent][1] <= span[child][0], (parent, child)
        ordered = sorted(span.values())
        for i, (start, _) in enumerate(ordered):  # at most 2 at once, restart or not
            overlapping = [s for s, e in ordered[:i] if e > start]
            assert len(overlapping) < 2, ordered
