"""Status, filters, keyset pagination, event history and lifecycle errors over HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from pilotwms.core.errors import IllegalTransition
from pilotwms.core.states import JobState
from pilotwms.server.logic.lifecycle import apply_transition
from wms_server import advance, make_settings, start_server

SIMPLE = 'Executable = "/bin/true";'


def submit(client: httpx.Client, jdl: str = SIMPLE) -> int:
    r = client.post("/api/v1/jobs", json={"jdl": jdl})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_unknown_job_is_404_problem(alice: httpx.Client) -> None:
    r = alice.get("/api/v1/jobs/987654321")
    assert r.status_code == 404
    body = r.json()
    assert body["job_id"] == 987654321 and body["status"] == 404
    assert body["type"].endswith("job-not-found")


def test_list_pages_through_every_job_in_id_order(alice: httpx.Client) -> None:
    r = alice.post("/api/v1/jobs/bulk", json={"jobs": [{"jdl": SIMPLE}] * 25})
    ids = [j["id"] for j in r.json()["jobs"]]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = alice.get("/api/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3
    assert alice.get("/api/v1/jobs", params={"cursor": "garbage!"}).status_code == 400


def test_filters_by_state_ids_parent_and_since(server, alice: httpx.Client) -> None:
    a, b, c = (submit(alice) for _ in range(3))
    advance(server, b, "READY", "RUNNING")
    running = alice.get("/api/v1/jobs", params={"state": "RUNNING"}).json()["jobs"]
    assert [j["id"] for j in running] == [b]
    both = alice.get("/api/v1/jobs", params={"state": ["RUNNING", "WAITING"]}).json()["jobs"]
    assert [j["id"] for j in both] == [a, b, c]
    picked = alice.get("/api/v1/jobs", params={"ids": f"{a},{c}"}).json()["jobs"]
    assert [j["id"] for j in picked] == [a, c]
    future = datetime.now(UTC).replace(year=2100).isoformat()
    assert alice.get("/api/v1/jobs", params={"since": future}).json()["jobs"] == []
    para = alice.post(
        "/api/v1/jobs",
        json={"jdl": 'JobType="Parametric"; Executable="/bin/true"; Parameters=4;'},
    ).json()
    nodes = alice.get("/api/v1/jobs", params={"parent": para["id"]}).json()["jobs"]
    assert [n["id"] for n in nodes] == [n["id"] for n in para["nodes"]]
    top = [j["id"] for j in alice.get("/api/v1/jobs", params={"limit": 1000}).json()["jobs"]]
    assert para["id"] in top and not set(top) & {n["id"] for n in para["nodes"]}


def test_owner_filter_and_other_users_jobs_are_invisible(server, alice: httpx.Client) -> None:
    mine = submit(alice)
    bob = server.user_client()
    theirs = submit(bob)
    assert bob.get(f"/api/v1/jobs/{mine}").status_code == 404
    listed = [j["id"] for j in bob.get("/api/v1/jobs").json()["jobs"]]
    assert listed == [theirs]
    admin = server.user_client(admin=True)
    owner = alice.get(f"/api/v1/jobs/{mine}").json()["owner"]
    by_owner = admin.get("/api/v1/jobs", params={"owner": owner}).json()["jobs"]
    assert [j["id"] for j in by_owner] == [mine]


def test_shared_group_members_see_each_others_jobs(tmp_path, database) -> None:

    running = start_server(make_settings(database, tmp_path, shared_groups=["atlas"]))
    try:
        ann = running.user_client(group="atlas")
        ben = running.user_client(group="atlas")
        cms = running.user_client(group="cms")
        job = submit(ann)
        assert ben.get(f"/api/v1/jobs/{job}").status_code == 200
        assert ben.post(f"/api/v1/jobs/{job}/cancel").status_code == 200
        assert cms.get(f"/api/v1/jobs/{job}").status_code == 404
    finally:
        running.stop()


def test_event_history_records_every_transition(server, alice: httpx.Client) -> None:
    job = submit(alice)
    advance(server, job, "READY", "SCHEDULED", "RUNNING", "DONE", done_code="ok", exit_code=0)
    events = alice.get(f"/api/v1/jobs/{job}/events").json()["events"]
    assert [(e["event"], e["state_from"], e["state_to"]) for e in events] == [
        ("RegJob", None, "SUBMITTED"),
        ("Accepted", "SUBMITTED", "WAITING"),
        ("Match", "WAITING", "READY"),
        ("Transfer", "READY", "SCHEDULED"),
        ("Running", "SCHEDULED", "RUNNING"),
        ("Done", "RUNNING", "DONE"),
    ]
    assert events[0]["source"].startswith("user:") and events[-1]["source"] == "test"
    status = alice.get(f"/api/v1/jobs/{job}").json()
    assert status["state"] == "DONE" and status["done_code"] == "ok" and status["exit_code"] == 0
    assert status["started_at"] and status["finished_at"]


def test_illegal_transition_names_job_states_and_cause(server, alice: httpx.Client) -> None:
    job = submit(alice)
    with server.db.write() as conn, pytest.raises(IllegalTransition) as info:
        apply_transition(conn, job, JobState.DONE, source="test")
    err = info.value
    assert (err.job_id, err.from_, err.to) == (job, "WAITING", "DONE")
    assert "READY" in err.cause
    events = alice.get(f"/api/v1/jobs/{job}/events").json()["events"]
    assert len(events) == 2


def test_compound_state_follows_its_nodes(server, alice: httpx.Client) -> None:
    para = alice.post(
        "/api/v1/jobs",
        json={"jdl": 'JobType="Parametric"; Executable="/bin/true"; Parameters=3;'},
    ).json()
    n0, n1, n2 = (n["id"] for n in para["nodes"])
    advance(server, n0, "READY", "RUNNING")
    assert alice.get(f"/api/v1/jobs/{para['id']}").json()["state"] == "RUNNING"
    advance(server, n0, "DONE", done_code="ok", exit_code=0)
    assert alice.get(f"/api/v1/jobs/{para['id']}").json()["state"] == "WAITING"
    for node in (n1, n2):
        advance(
            server,
            node,
            "READY",
            "RUNNING",
            "DONE",
            done_code="ok",
            exit_code=1 if node == n2 else 0,
        )
    status = alice.get(f"/api/v1/jobs/{para['id']}").json()
    assert (status["state"], status["done_code"]) == ("DONE", "failed")
    assert status["children"]["states"] == {"DONE": 3}
    events = alice.get(f"/api/v1/jobs/{para['id']}/events").json()["events"]
    derived = [e["state_to"] for e in events if e["event"] == "CollectionState"]
    assert derived == ["READY", "RUNNING", "WAITING"] * 2 + ["READY", "RUNNING", "DONE"]


def test_job_timestamps_are_utc(alice: httpx.Client) -> None:
    before = time.time()
    job = alice.get(f"/api/v1/jobs/{submit(alice)}").json()
    submitted = datetime.fromisoformat(job["submitted_at"])
    assert submitted.tzinfo is not None
    assert abs(submitted.timestamp() - before) < 60
