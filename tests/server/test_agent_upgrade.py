"""The rolling upgrade over real HTTP on SQLite and PostgreSQL: installing an agent zipapp at run
time (``PUT /api/v1/admin/agent``, ``pilotwms admin agent upload``), serving it from every replica,
and draining the pilots of the old version without killing their jobs."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pilot_client import ProtocolPilot, job_state, new_tag, tagged_jdl, wait_for
from pilotwms.agent import AGENT_VERSION
from pilotwms.agent.zipapp import build_zipapp
from pilotwms.cli.main import app as cli
from wms_server import (
    PROTOCOL_TIMINGS,
    RunningServer,
    ThrowawayDatabase,
    make_settings,
    serving,
    start_server,
)

NEW = "9.1.0"


@pytest.fixture(scope="module")
def server(
    database: ThrowawayDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server of its own: installing an agent changes what every pilot of it must run."""
    timings = PROTOCOL_TIMINGS | {"lease_timeout_s": 5.0}
    settings = make_settings(database, tmp_path_factory.mktemp("server"), **timings)
    with serving(settings) as running:
        yield running


def zip_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def served_version(server: RunningServer, token: str) -> str:
    reply = server.client(token).get("/api/v1/pilot/agent.pyz")
    assert reply.status_code == 200, reply.text
    return reply.headers["X-Pilotwms-Agent-Version"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"#!/bin/sh\necho not a zip\n", "not a zip file"),
        (zip_bytes({"pilotwms/agent/__init__.py": 'AGENT_VERSION = "1"\n'}), "__main__.py"),
        (zip_bytes({"__main__.py": "", "pilotwms/agent/__init__.py": "X = 1\n"}), "AGENT_VERSION"),
        (
            zip_bytes({"__main__.py": "", "pilotwms/agent/__init__.py": 'AGENT_VERSION = "a b"\n'}),
            "not a version",
        ),
    ],
    ids=["not-a-zip", "no-main", "no-version", "bad-version"],
)
def test_a_bad_agent_upload_is_refused_with_the_reason(
    admin: httpx.Client, body: bytes, says: str
) -> None:
    reply = admin.put("/api/v1/admin/agent", content=body)
    assert reply.status_code == 400, reply.text
    assert says in reply.json()["detail"]
    assert admin.get("/api/v1/version").json()["agent_version"] == AGENT_VERSION


def test_user_tokens_cannot_install_an_agent(server: RunningServer) -> None:
    reply = server.user_client().put("/api/v1/admin/agent", content=b"x")
    assert reply.status_code == 403


def test_upgrade_drains_old_pilots_after_their_jobs_and_new_ones_get_work(
    server: RunningServer, admin: httpx.Client, tmp_path: Path
) -> None:
    token = server.token(server.add_user(), "pilot")
    user = server.user_client()
    tag = new_tag()
    old = ProtocolPilot(server, token, tag=tag)
    running_job = int(user.post("/api/v1/jobs", json={"jdl": tagged_jdl(tag)}).json()["id"])
    (spec,) = wait_for(old.work, what="the job handed to the old pilot")
    old.report(spec, "started")
    old.report(spec, "payload_started")
    assert served_version(server, token) == AGENT_VERSION

    path = tmp_path / "agent.pyz"
    assert build_zipapp(path, version=NEW) == NEW
    reply = admin.put("/api/v1/admin/agent", content=path.read_bytes())
    assert reply.status_code == 200, reply.text
    installed = reply.json()
    assert installed["version"] == NEW and installed["previous_version"] == AGENT_VERSION
    fetched = server.client(token).get("/api/v1/pilot/agent.pyz")
    assert fetched.headers["X-Pilotwms-Agent-Version"] == NEW
    assert fetched.content == path.read_bytes()
    assert admin.get("/api/v1/version").json()["agent_version"] == NEW
    assert admin.get("/api/v1/admin/demand").json()["agent_version"] == NEW

    # The old pilot's next heartbeat carries the drain (once), with no grace: its job runs on.
    commands = old.heartbeat([spec])
    reason = f"agent upgrade: {AGENT_VERSION} -> {NEW}"
    assert commands == [{"action": "drain", "reason": reason, "grace_s": None}]
    assert old.heartbeat([spec]) == []
    listed = admin.get(f"/api/v1/pilots/{old.pilot_id}").json()
    assert listed["state"] == "draining" and listed["reason"] == reason
    demand = admin.get("/api/v1/admin/demand").json()["pilots"]
    assert next(p for p in demand if p["id"] == old.pilot_id)["state"] == "draining"

    # It takes no new work; a pilot of the new version does. Its running job ends normally.
    waiting = int(user.post("/api/v1/jobs", json={"jdl": tagged_jdl(tag)}).json()["id"])
    assert old.work(max_jobs=1) == []
    new = ProtocolPilot(server, token, tag=tag, version=NEW)
    (taken,) = wait_for(new.work, what="the waiting job handed to the new pilot")
    assert int(taken["job_id"]) == waiting
    assert new.heartbeat([taken]) == []
    assert old.finish(spec)["outcome"] == "accepted"
    assert job_state(user, running_job)["state"] == "DONE"
    assert new.finish(taken)["outcome"] == "accepted"
    assert job_state(user, waiting)["state"] == "DONE"

    # A pilot that registers with an old version after the upgrade drains at once.
    late = ProtocolPilot(server, token, tag=tag)
    assert admin.get(f"/api/v1/pilots/{late.pilot_id}").json()["state"] == "draining"
    assert late.heartbeat() == [{"action": "drain", "reason": reason, "grace_s": None}]


def test_the_installed_agent_is_served_by_replicas_and_after_restarts(
    server: RunningServer,
    admin: httpx.Client,
    database: ThrowawayDatabase,
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.pyz"
    build_zipapp(path, version="9.2.0")
    assert admin.put("/api/v1/admin/agent", content=path.read_bytes()).status_code == 200
    # Another server on the same database and blob store: it serves the installed agent, not
    # the one of its own package.
    replica = start_server(
        make_settings(
            database, tmp_path / "replica", sandbox_dir=server.settings.effective_sandbox_dir
        )
    )
    try:
        token = replica.token(replica.add_user(), "pilot")
        assert served_version(replica, token) == "9.2.0"
        assert replica.client().get("/api/v1/version").json()["agent_version"] == "9.2.0"
        listed = replica.user_client(admin=True).get("/api/v1/admin/agent").json()
        assert listed["current"]["version"] == "9.2.0"
        assert [r["version"] for r in listed["releases"]][:2] == ["9.2.0", NEW]
    finally:
        replica.stop()


def test_admin_agent_upload_installs_on_the_database_the_servers_read(
    server: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "agent.pyz"
    build_zipapp(path, version="9.3.0")
    base = [
        "admin",
        "--data-dir",
        str(server.settings.data_dir),
        "--database-url",
        server.settings.effective_database_url,
    ]
    runner = CliRunner()
    done = runner.invoke(cli, [*base, "agent", "upload", str(path)])
    assert done.exit_code == 0, done.output
    assert "agent 9.3.0 installed" in done.output
    bad = tmp_path / "bad.pyz"
    bad.write_bytes(b"nothing")
    refused = runner.invoke(cli, [*base, "agent", "upload", str(bad)])
    assert refused.exit_code == 1 and "not a zip file" in refused.output
    token = server.token(server.add_user(), "pilot")
    # The running server reads the current agent from the database within seconds.
    wait_for(
        lambda: served_version(server, token) == "9.3.0",
        timeout=30,
        interval=0.2,
        what="the uploaded agent served",
    )
