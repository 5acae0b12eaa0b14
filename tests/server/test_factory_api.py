"""The server side of the pilot factory (``docs/pilot-protocol.md``, "Factory API"), over real
HTTP on SQLite and PostgreSQL: pilot records from submission adopted by registration, batch
states, the demand, pilot tokens, pilot logs; and the migration of a 0002 database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from pilot_client import PRODUCTION_AD, ProtocolPilot, job_state, new_tag, tagged_jdl, wait_for
from pilotwms.agent import AGENT_VERSION
from pilotwms.classad import ClassAd, matches, parse_ad
from pilotwms.cli.main import app as cli
from pilotwms.client import Client, NotFoundError
from wms_server import (
    PROTOCOL_TIMINGS,
    RunningServer,
    ThrowawayDatabase,
    fresh_database,
    make_settings,
    serving,
)


@pytest.fixture(scope="module")
def server(
    database: ThrowawayDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server with a short heartbeat and lease (pilots here are test clients)."""
    timings = PROTOCOL_TIMINGS | {"lease_timeout_s": 3.0}
    settings = make_settings(database, tmp_path_factory.mktemp("server"), **timings)
    with serving(settings) as running:
        yield running


@pytest.fixture(scope="module")
def pilot_token(server: RunningServer) -> str:
    return server.token(server.add_user(), "pilot")


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def record(admin: httpx.Client, queue: str, *batch_ids: str, **extra: Any) -> dict[str, str]:
    body = {"queue": queue, "backend": "slurm", "batch_ids": list(batch_ids), **extra}
    made = ok(admin.post("/api/v1/admin/pilots", json=body))["pilots"]
    assert [p["batch_id"] for p in made] == list(batch_ids)
    return {p["batch_id"]: p["id"] for p in made}


def pilot(admin: httpx.Client, pilot_id: str) -> dict[str, Any]:
    result: dict[str, Any] = ok(admin.get(f"/api/v1/pilots/{pilot_id}"))
    return result


def batch_states(admin: httpx.Client, queue: str, *changes: tuple[str, str, str | None]) -> int:
    body = {
        "queue": queue,
        "pilots": [{"batch_id": b, "state": s, "reason": r} for b, s, r in changes],
    }
    return int(ok(admin.post("/api/v1/admin/pilots/batch-states", json=body))["updated"])


def submit(client: httpx.Client, jdl: str) -> int:
    return int(ok(client.post("/api/v1/jobs", json={"jdl": jdl}), 201)["id"])


def test_submitted_rows_are_adopted_by_registration(
    server: RunningServer, admin: httpx.Client, pilot_token: str
) -> None:
    queue = f"slurm-{new_tag()}"
    logs = {"101": {"stdout": "/var/pilots/101.out", "stderr": "/var/pilots/101.err"}}
    ids = record(admin, queue, "101", "102", factory="f1", log_paths=logs)
    first = pilot(admin, ids["101"])
    assert first["state"] == "submitted" and first["backend"] == "slurm"
    assert first["batch_id"] == "101" and first["queue"] == queue
    assert first["submitted_at"] and first["registered_at"] is None and not first["has_log"]
    assert batch_states(admin, queue, ("101", "queued", None), ("102", "running", None)) == 2
    assert pilot(admin, ids["101"])["state"] == pilot(admin, ids["102"])["state"] == "queued"
    assert batch_states(admin, queue, ("101", "queued", None)) == 0  # nothing changed
    assert record(admin, queue, "102", "101") == ids  # sent again: the same rows

    agent = ProtocolPilot(server, pilot_token, tag=new_tag(), queue=queue, batch_id="101")
    assert agent.pilot_id == ids["101"]  # adopted, not a new row
    adopted = pilot(admin, ids["101"])
    assert adopted["state"] == "idle" and adopted["version"] == AGENT_VERSION
    assert adopted["registered_at"] and adopted["submitted_at"] == first["submitted_at"]
    assert agent.heartbeat() == []
    idle = ok(admin.get("/api/v1/pilots", params={"state": "idle"}))["pilots"]
    assert ids["101"] in [p["id"] for p in idle]
    queued = ok(admin.get("/api/v1/pilots", params={"state": ["queued", "submitted"]}))["pilots"]
    assert ids["102"] in [p["id"] for p in queued] and ids["101"] not in [p["id"] for p in queued]

    # A batch id the factory never recorded, or one already adopted, gets a row of its own.
    stranger = ProtocolPilot(server, pilot_token, tag=new_tag(), queue=queue, batch_id="999")
    again = ProtocolPilot(server, pilot_token, tag=new_tag(), queue=queue, batch_id="101")
    unnamed = ProtocolPilot(server, pilot_token, tag=new_tag(), queue=queue, batch_id="")
    assert stranger.pilot_id not in ids.values() and again.pilot_id != ids["101"]
    assert unnamed.pilot_id != ids["102"] and pilot(admin, ids["102"])["state"] == "queued"


def test_bad_records_and_states_are_refused_with_the_reason(admin: httpx.Client) -> None:
    bad = admin.post(
        "/api/v1/admin/pilots", json={"queue": "q", "backend": "slurm", "batch_ids": ["1", "1"]}
    )
    assert bad.status_code == 400 and "appear once" in bad.json()["detail"]
    stray = admin.post(
        "/api/v1/admin/pilots",
        json={"queue": "q", "backend": "slurm", "batch_ids": ["1"], "log_paths": {"2": {}}},
    )
    assert stray.status_code == 400 and "log_paths" in stray.json()["detail"]
    wrong = admin.post(
        "/api/v1/admin/pilots/batch-states",
        json={"queue": "q", "pilots": [{"batch_id": "1", "state": "exploded"}]},
    )
    assert wrong.status_code == 400 and "queued, running" in wrong.json()["detail"]
    state = admin.get("/api/v1/pilots", params={"state": "lost"})
    assert state.status_code == 400 and "failed" in state.json()["detail"]


def test_batch_states_end_pilots_with_the_batch_systems_reason(
    server: RunningServer, admin: httpx.Client, pilot_token: str
) -> None:
    queue = f"slurm-{new_tag()}"
    ids = record(admin, queue, "201", "202", "203")
    changes = [("201", "failed", "exit code 1: python3 not found"), ("202", "cancelled", None)]
    assert batch_states(admin, queue, *changes) == 2
    died = pilot(admin, ids["201"])
    assert died["state"] == "failed"
    assert (
        died["reason"] == "pilot ended without registering: failed: exit code 1: python3 not found"
    )
    assert died["ended_at"]
    assert pilot(admin, ids["202"])["state"] == "finished"

    # A live pilot whose batch job ended without deregistering: failed at once, its job requeued
    # as for a lost lease (deep: the payload had started) without waiting for the lease.
    tag = new_tag()
    user = server.user_client()
    agent = ProtocolPilot(server, pilot_token, tag=tag, queue=queue, batch_id="203")
    job = submit(user, tagged_jdl(tag))
    (spec,) = wait_for(agent.work, what="the job handed out")
    agent.report(spec, "started")
    agent.report(spec, "payload_started")
    assert pilot(admin, agent.pilot_id)["state"] == "running"
    assert batch_states(admin, queue, ("203", "finished", None)) == 1
    ended = pilot(admin, agent.pilot_id)
    assert ended["state"] == "failed" and ended["reason"] == "batch job ended: finished"
    status = job_state(user, job)
    assert status["state"] == "WAITING" and status["retries_used"] == 1
    assert agent.client.post(agent.path("/heartbeat"), json={"jobs": []}).status_code == 404
    assert batch_states(admin, queue, ("203", "failed", "gone")) == 0  # ended already

    # Cancelled in the batch system (factory cancel-pilots): the pilot failed, not the
    # payload, so its job is a shallow retry.
    taker = ProtocolPilot(server, pilot_token, tag=tag, queue=queue, batch_id="204")
    (again,) = wait_for(taker.work, what="the job handed out again")
    taker.report(again, "started")
    taker.report(again, "payload_started")
    assert batch_states(admin, queue, ("204", "cancelled", "scancel")) == 1
    status = job_state(user, job)
    assert status["state"] == "WAITING"
    assert status["retries_used"] == 1 and status["shallow_retries_used"] == 1


def test_batch_states_of_one_pilot_in_one_request_apply_in_order(admin: httpx.Client) -> None:
    queue = f"slurm-{new_tag()}"
    ids = record(admin, queue, "301")
    changes = [("301", "queued", None), ("301", "failed", "node failure")]
    assert batch_states(admin, queue, *changes) == 2
    ended = pilot(admin, ids["301"])
    assert ended["state"] == "failed"
    assert ended["reason"] == "pilot ended without registering: failed: node failure"


def test_demand_lists_waiting_task_queues_and_pilots_by_batch_id(
    server: RunningServer, admin: httpx.Client, pilot_token: str
) -> None:
    tag = new_tag()
    user = server.user_client()
    jdl = (
        'Executable = "/bin/true"; CpuNumber = 2; '
        f'Requirements = other.TestTag == "{tag}" && other.Cpus >= CpuNumber; '
        "Rank = other.Cpus;"
    )
    for _ in range(3):
        submit(user, jdl)
    submit(user, tagged_jdl(tag))  # a second task queue of the same tag (1 core)

    def mine() -> list[dict[str, Any]]:
        tqs = ok(admin.get("/api/v1/admin/demand"))["task_queues"]
        return [t for t in tqs if tag in t["ad"]]

    tqs = wait_for(lambda: len(mine()) == 2 and mine(), what="both task queues in the demand")
    by_cores = {t["cores"]: t for t in tqs}
    assert by_cores[2]["waiting"] == 3 and by_cores[1]["waiting"] == 1
    ad = parse_ad(by_cores[2]["ad"])
    assert "Requirements" in ad and "Rank" in ad and ad.evaluate("CpuNumber") == 2
    # The factory evaluates it against its queues' static slot ads.
    assert matches(ad, ClassAd.from_python({**PRODUCTION_AD, "TestTag": tag}))
    assert not matches(ad, ClassAd.from_python({**PRODUCTION_AD, "TestTag": tag, "Cpus": 1}))
    assert not matches(ad, ClassAd.from_python({**PRODUCTION_AD, "TestTag": "another"}))

    queue = f"slurm-{new_tag()}"
    record(admin, queue, "301", "302", "303", "304")
    idle = ProtocolPilot(server, pilot_token, tag=new_tag(), queue=queue, batch_id="301")
    busy = ProtocolPilot(server, pilot_token, tag=tag, queue=queue, batch_id="302")
    (spec,) = busy.work(max_jobs=1)
    draining = ProtocolPilot(server, pilot_token, tag=new_tag(), queue=queue, batch_id="303")
    ok(admin.post(f"/api/v1/admin/pilots/{draining.pilot_id}/drain", json={"reason": "test"}))
    ended = ProtocolPilot(server, pilot_token, tag=new_tag(), queue=queue, batch_id="304")
    ended.client.request("DELETE", ended.path(), json={"reason": "idle for 1 s"})

    reply = ok(admin.get("/api/v1/admin/demand"))
    assert reply["agent_version"] == AGENT_VERSION
    pilots = {p["batch_id"]: p for p in reply["pilots"] if p["queue"] == queue}
    assert set(pilots) == {"301", "302", "303", "304"}
    assert pilots["301"]["state"] == "idle" and pilots["301"]["free_cores"] == 4
    assert pilots["301"]["id"] == idle.pilot_id and pilots["301"]["version"] == AGENT_VERSION
    assert pilots["302"]["state"] == "busy" and pilots["302"]["id"] == busy.pilot_id
    assert pilots["302"]["free_cores"] == 4 - spec["cores"] == 2
    assert pilots["303"]["state"] == "draining"
    assert pilots["304"]["state"] == "ended" and pilots["304"]["free_cores"] is None
    remaining = {t["cores"]: t["waiting"] for t in mine()}
    assert remaining[2] == 2  # the index counts the job handed out


def test_pilot_token_works_only_on_pilot_routes(server: RunningServer, admin: httpx.Client) -> None:
    issued = ok(
        admin.post("/api/v1/admin/pilot-tokens", json={"lifetime_s": 3600, "description": "f1"})
    )
    assert issued["token"].startswith("pwms_") and issued["token_id"].startswith("tok_")
    expires = datetime.fromisoformat(issued["expires_at"])
    assert timedelta(minutes=50) < expires - datetime.now(UTC) <= timedelta(hours=1)
    agent = ProtocolPilot(server, issued["token"], tag=new_tag())
    assert agent.heartbeat() == []
    with server.client(issued["token"]) as stolen:
        for path in ("/api/v1/jobs", "/api/v1/pilots", "/api/v1/admin/demand"):
            refused = stolen.get(path)
            assert refused.status_code == 403, path
            assert "pilot token cannot use" in refused.json()["detail"]
    user = server.user_client()
    assert user.post("/api/v1/admin/pilot-tokens", json={}).status_code == 403
    too_long = admin.post("/api/v1/admin/pilot-tokens", json={"lifetime_s": 10**9})
    assert too_long.status_code == 400 and "at most" in too_long.json()["detail"]


def test_pilot_logs_are_stored_truncated_and_served(
    server: RunningServer, admin: httpx.Client, tmp_path: Path
) -> None:
    (pid,) = record(admin, f"q-{new_tag()}", "401").values()
    put = admin.put(
        f"/api/v1/admin/pilots/{pid}/log", params={"stream": "stdout"}, content=b"hello\nbye\n"
    )
    assert ok(put)["truncated"] is False
    user_token = server.token(server.add_user())
    user = server.client(user_token)
    got = user.get(f"/api/v1/pilots/{pid}/log")
    assert got.status_code == 200 and got.text == "hello\nbye\n"
    assert got.headers["content-type"].startswith("text/plain")
    assert got.headers["x-pilotwms-log-truncated"] == "false"
    assert pilot(admin, pid)["logs"] == ["stdout"] and pilot(admin, pid)["has_log"]

    missing = user.get(f"/api/v1/pilots/{pid}/log", params={"stream": "stderr"})
    assert missing.status_code == 404 and "no stderr log stored" in missing.json()["detail"]
    assert user.get("/api/v1/pilots/999999/log").status_code == 404
    bad = admin.put(f"/api/v1/admin/pilots/{pid}/log", params={"stream": "x"}, content=b"")
    assert bad.status_code == 400 and "stdout" in bad.json()["detail"]
    assert user.put(f"/api/v1/admin/pilots/{pid}/log", content=b"x").status_code == 403

    big = b"".join(b"line %07d\n" % i for i in range(150_000))  # 1.8 MB
    stored = ok(admin.put(f"/api/v1/admin/pilots/{pid}/log?stream=stderr", content=big))
    assert stored["truncated"] is True and stored["stored_bytes"] == 1 << 20
    assert stored["total_bytes"] == len(big)
    tail = user.get(f"/api/v1/pilots/{pid}/log", params={"stream": "stderr"})
    assert tail.headers["x-pilotwms-log-truncated"] == "true"
    first, rest = tail.content.split(b"\n", 1)
    assert b"log truncated" in first and str(len(big) - (1 << 20)).encode() in first
    assert rest == big[-(1 << 20) :]
    # The factory's own cut: it sends the tail and the whole file's size.
    ok(admin.put(f"/api/v1/admin/pilots/{pid}/log?stream=stdout&total_bytes=5000", content=b"x\n"))
    assert "first 4998 of 5000 bytes" in user.get(f"/api/v1/pilots/{pid}/log").text

    with Client(server.base_url, user_token) as client:
        assert client.pilot_log(pid, "stderr").endswith("line 0149999\n")
        with pytest.raises(NotFoundError):
            client.pilot_log("999999")
    env = {
        "PILOTWMS_URL": server.base_url,
        "PILOTWMS_TOKEN": user_token,
        "PILOTWMS_CONFIG": str(tmp_path / "none.toml"),
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    printed = runner.invoke(cli, ["pilots", "log", pid, "--stderr"], env=env)
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.endswith("line 0149999\n")
    listed = runner.invoke(cli, ["pilots", "--state", "submitted"], env=env)
    assert listed.exit_code == 0 and pid in listed.stdout and "VERSION" in listed.stdout
    absent = runner.invoke(cli, ["pilots", "log", "999999"], env=env)
    assert absent.exit_code != 0 and "999999" in absent.output


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_0002_database_is_upgraded_with_its_pilots_renamed(kind: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import DateTime, Integer, String, column, table

    from pilotwms.server.db import Database, metadata, pilots
    from pilotwms.server.db.migrate import upgrade

    with fresh_database(kind, tmp_path / "db") as empty:
        database = Database(empty.url)
        try:
            upgrade(database.engine, "0002")
            old = table(
                "pilots",
                column("id", Integer),
                column("state", String),
                column("registered_at", DateTime(timezone=True)),
                column("last_heartbeat_at", DateTime(timezone=True)),
            )
            now = datetime.now(UTC).replace(tzinfo=None) if kind == "sqlite" else datetime.now(UTC)
            with database.engine.begin() as conn:
                for pid, state in ((1, "gone"), (2, "lost"), (3, "running")):
                    conn.execute(
                        insert(old).values(
                            id=pid,
                            state=state,
                            registered_at=now,
                            last_heartbeat_at=now,
                        )
                    )
            upgrade(database.engine)
            with database.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), metadata) == []
                rows = conn.execute(select(pilots.c.id, pilots.c.state, pilots.c.ended_at)).all()
            states = {r.id: (r.state, r.ended_at is not None) for r in rows}
            assert states == {1: ("finished", True), 2: ("failed", True), 3: ("running", False)}
        finally:
            database.dispose()
