"""Expiry of waiting jobs, purge of finished ones, garbage collection of their sandbox files,
and the metrics that count them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pilotwms.core.states import JobState
from pilotwms.server.logic.expiry import effective_expiry, is_expired
from wms_server import RunningServer, add_output, advance, make_settings, serving

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("state", "expiry", "expired"),
    [
        (JobState.WAITING, NOW - HOUR, True),
        (JobState.WAITING, NOW, True),
        (JobState.WAITING, NOW + HOUR, False),
        (JobState.WAITING, None, False),
        (JobState.SUBMITTED, NOW - HOUR, False),
        (JobState.RUNNING, NOW - HOUR, False),
        (JobState.DONE, NOW - HOUR, False),
    ],
)
def test_only_waiting_jobs_past_their_deadline_expire(state, expiry, expired) -> None:
    assert is_expired(state, expiry, NOW) is expired


def test_effective_expiry_prefers_the_jdl() -> None:
    assert effective_expiry(NOW, NOW + HOUR, timedelta(days=1)) == NOW + HOUR
    assert effective_expiry(NOW, None, timedelta(days=1)) == NOW + timedelta(days=1)
    assert effective_expiry(NOW, None, None) is None


@pytest.fixture(scope="module")
def server(database, tmp_path_factory) -> Iterator[RunningServer]:
    settings = make_settings(
        database,
        tmp_path_factory.mktemp("expiry"),
        expiry_check_interval_s=0.1,
        blob_gc_grace_s=0,
    )
    with serving(settings) as running:
        yield running


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_waiting_job_past_expiry_time_is_aborted(server, alice: httpx.Client) -> None:
    past = int(time.time()) - 5
    future = int(time.time()) + 3600
    old = alice.post("/api/v1/jobs", json={"jdl": f'Executable="/bin/true"; ExpiryTime={past};'})
    new = alice.post("/api/v1/jobs", json={"jdl": f'Executable="/bin/true"; ExpiryTime={future};'})
    old_id, new_id = old.json()["id"], new.json()["id"]
    wait_for(lambda: alice.get(f"/api/v1/jobs/{old_id}").json()["state"] == "ABORTED")
    status = alice.get(f"/api/v1/jobs/{old_id}").json()
    assert status["reason"] == "request expired"
    events = alice.get(f"/api/v1/jobs/{old_id}/events").json()["events"]
    assert events[-1]["event"] == "Abort" and events[-1]["source"] == "expiry"
    assert alice.get(f"/api/v1/jobs/{new_id}").json()["state"] == "WAITING"


def test_purge_releases_sandbox_blobs_for_gc(server, alice: httpx.Client) -> None:
    admin = server.user_client(admin=True)
    shared = b"shared by two jobs"
    jdl = 'Executable = "/bin/cat"; InputSandbox = {"in.txt"};'
    a = alice.post("/api/v1/jobs", data={"jdl": jdl}, files=[("in.txt", ("in.txt", shared))])
    b = alice.post("/api/v1/jobs", data={"jdl": jdl}, files=[("in.txt", ("in.txt", shared))])
    a_id, b_id = a.json()["id"], b.json()["id"]
    digest = hashlib.sha256(shared).hexdigest()
    advance(server, a_id, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    out_digest = add_output(server, a_id, "result.txt", b"only job a made this")
    not_finished = admin.post("/api/v1/admin/purge", json={"job_ids": [b_id]})
    assert not_finished.status_code == 409
    assert alice.post("/api/v1/admin/purge", json={"job_ids": [a_id]}).status_code == 403
    r = admin.post("/api/v1/admin/purge", json={"job_ids": [a_id]})
    assert r.status_code == 200, r.text
    assert r.json()["purged"] == [a_id]
    assert out_digest in r.json()["blobs_deleted"]
    assert digest not in r.json()["blobs_deleted"]
    assert alice.head(f"/api/v1/sandboxes/{digest}").status_code == 200
    assert alice.head(f"/api/v1/sandboxes/{out_digest}").status_code == 404
    assert alice.get(f"/api/v1/jobs/{a_id}").json()["state"] == "PURGED"
    assert alice.get(f"/api/v1/jobs/{a_id}/events").json()["events"][-1]["event"] == "Purge"
    alice.post(f"/api/v1/jobs/{b_id}/cancel")
    r = admin.post("/api/v1/admin/purge", json={"job_ids": [b_id]})
    assert digest in r.json()["blobs_deleted"]
    assert alice.head(f"/api/v1/sandboxes/{digest}").status_code == 404


def test_purge_of_a_compound_job_purges_its_nodes(server, alice: httpx.Client) -> None:
    admin = server.user_client(admin=True)
    para = alice.post(
        "/api/v1/jobs", json={"jdl": 'JobType="Parametric"; Executable="/bin/true"; Parameters=3;'}
    ).json()
    alice.post(f"/api/v1/jobs/{para['id']}/cancel")
    r = admin.post("/api/v1/admin/purge", json={"job_ids": [para["id"]]}).json()
    assert sorted(r["purged"]) == sorted([para["id"], *(n["id"] for n in para["nodes"])])


def test_metrics_count_jobs_per_state_and_submissions(server, alice: httpx.Client) -> None:
    alice.post("/api/v1/jobs", json={"jdl": 'Executable="/bin/true";'})
    text = httpx.get(f"{server.base_url}/metrics").text
    assert 'pilotwms_jobs{state="WAITING"}' in text
    assert 'pilotwms_submissions_total{kind="job"}' in text
    assert "pilotwms_request_duration_seconds_bucket" in text
    assert 'route="/api/v1/jobs/{job_id}"' in text or 'route="/api/v1/jobs"' in text
