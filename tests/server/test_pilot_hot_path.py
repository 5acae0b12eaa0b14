"""The pilot request path under load: the pilot-token cache, and long polls at shutdown."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilot_client import ProtocolPilot, new_tag, tagged_jdl, wait_for
from pilotwms.server.api.policy import TokenCache
from pilotwms.server.logic.accounts import list_tokens, revoke_token
from wms_server import RunningServer, ThrowawayDatabase, make_settings, serving

LONG_POLL_S = 60.0


def test_a_revoked_pilot_token_is_refused_within_the_cache_time(
    server: RunningServer,
) -> None:
    app = server.server.config.app
    app.state.token_cache = TokenCache(ttl=0.5)
    name = server.add_user()
    pilot = ProtocolPilot(server, server.token(name, "pilot"), tag=new_tag())
    assert pilot.heartbeat() == []  # the token is valid, and now cached
    with server.db.write() as conn:
        (token,) = list_tokens(conn, name)
        revoke_token(conn, token["id"])

    def refused() -> bool:
        reply = pilot.client.post(pilot.path("/heartbeat"), json={"state": "running", "jobs": []})
        return reply.status_code == 401 and "revoked" in reply.json()["detail"]

    wait_for(refused, timeout=30, what="the revoked pilot token to be refused")


def test_user_tokens_are_checked_on_every_request(server: RunningServer) -> None:
    name = server.add_user()
    client = server.client(server.token(name))
    assert client.get("/api/v1/jobs").status_code == 200
    with server.db.write() as conn:
        (token,) = list_tokens(conn, name)
        revoke_token(conn, token["id"])
    assert client.get("/api/v1/jobs").status_code == 401


def test_token_cache_forgets_entries_after_their_time() -> None:
    from pilotwms.server.logic.accounts import Principal, Role

    cache = TokenCache(ttl=0.0)
    cache.put("digest", Principal(user="u", group="g", role=Role.PILOT, token_id="t"))
    assert cache.get("digest") is None
    cache = TokenCache(ttl=3600.0, max_entries=1)
    first = Principal(user="a", group="g", role=Role.PILOT, token_id="1")
    cache.put("a", first)
    assert cache.get("a") == first
    cache.put("b", Principal(user="b", group="g", role=Role.PILOT, token_id="2"))
    assert cache.get("a") is None and cache.get("b") is not None


@pytest.fixture
def stoppable(database: ThrowawayDatabase, tmp_path: Path) -> Iterator[RunningServer]:
    """A server of its own (the test stops it), with a long poll longer than the test."""
    with serving(make_settings(database, tmp_path, work_max_wait_s=LONG_POLL_S)) as running:
        yield running


def test_stopping_the_server_answers_waiting_work_requests_at_once(
    stoppable: RunningServer,
) -> None:
    pilot = ProtocolPilot(stoppable, stoppable.token(stoppable.add_user(), "pilot"), tag=new_tag())
    answers: list[object] = []

    def poll() -> None:
        try:
            answers.append(pilot.work(wait_s=LONG_POLL_S))
        except (httpx.HTTPError, AssertionError) as exc:
            answers.append(exc)

    waiter = threading.Thread(target=poll, daemon=True)
    waiter.start()
    notifier = stoppable.server.config.app.state.services.dispatcher.notifier
    wait_for(lambda: notifier.parked == 1, timeout=30, what="the work request to wait")
    stoppable.server.should_exit = True
    # Answered, with no jobs, long before its poll time; and the server is gone as soon.
    waiter.join(LONG_POLL_S / 2)
    stoppable.thread.join(LONG_POLL_S / 2)
    assert not waiter.is_alive() and not stoppable.thread.is_alive()
    assert answers == [[]]


def test_a_job_of_an_emptied_task_queue_is_handed_out_at_once(
    server: RunningServer, alice: httpx.Client
) -> None:
    """Task queues emptied by hand-outs stay in the index (no re-parse for the next job of
    the same queue); a job submitted to such a queue still wakes a waiting pilot."""
    tag = new_tag()
    pilot = ProtocolPilot(server, server.token(server.add_user(), "pilot"), tag=tag)
    for _ in range(3):
        job = alice.post("/api/v1/jobs", json={"jdl": tagged_jdl(tag)}).json()
        (spec,) = wait_for(lambda: pilot.work(wait_s=5.0), timeout=30, what="the job")
        assert spec["job_id"] == str(job["id"])
        pilot.finish(spec)


class _CountingDatabase:
    """The dispatcher's database, counting the transactions it opens."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.reads = 0
        self.writes = 0

    def read(self) -> Any:
        self.reads += 1
        return self.db.read()

    def write(self) -> Any:
        self.writes += 1
        return self.db.write()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_new_jobs_wake_a_draining_pilots_request_without_a_write_each(
    stoppable: RunningServer,
) -> None:
    """A pilot drained by the server keeps polling until its heartbeat brings the drain; each
    job submitted meanwhile wakes its waiting request, which must get no job, and learn that
    from a read rather than a claiming write transaction per job."""
    tag = new_tag()
    pilot = ProtocolPilot(stoppable, stoppable.token(stoppable.add_user(), "pilot"), tag=tag)
    admin, alice = stoppable.user_client(admin=True), stoppable.user_client()
    drained = admin.post(f"/api/v1/admin/pilots/{pilot.pilot_id}/drain", json={"reason": "test"})
    assert drained.status_code == 200, drained.text
    dispatcher = stoppable.server.config.app.state.services.dispatcher
    counting = _CountingDatabase(dispatcher.db)
    dispatcher.db = counting
    answers: list[object] = []
    waiter = threading.Thread(target=lambda: answers.append(pilot.work(wait_s=LONG_POLL_S)))
    waiter.start()
    wait_for(lambda: dispatcher.notifier.parked == 1, timeout=30, what="the request to wait")
    jobs: set[int] = set()
    for n in range(1, 6):
        reply = alice.post("/api/v1/jobs", json={"jdl": tagged_jdl(tag)})
        jobs.add(reply.raise_for_status().json()["id"])
        wait_for(
            lambda n=n: counting.reads + counting.writes >= n,
            timeout=30,
            what=f"the waiting request to look at job {n}",
        )
    assert counting.writes == 1  # the first look finds the pilot draining
    assert {alice.get(f"/api/v1/jobs/{job}").json()["state"] for job in jobs} == {"WAITING"}
    stoppable.server.should_exit = True  # which answers the waiting request at once
    waiter.join(LONG_POLL_S / 2)
    assert not waiter.is_alive() and answers == [[]]
