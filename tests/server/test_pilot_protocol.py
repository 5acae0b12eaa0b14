"""The pilot protocol against the real server, step by step with a protocol-level client
(``tests/pilot_client.py``, not the agent), on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pilot_client import ProtocolPilot, job_state, new_tag, tagged_jdl, wait_for
from wms_server import PROTOCOL_TIMINGS, RunningServer, ThrowawayDatabase, make_settings, serving

LEASE_S = 2.0


@pytest.fixture(scope="module")
def server(
    database: ThrowawayDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server with a short heartbeat and lease and a long enough long poll to observe."""
    timings = PROTOCOL_TIMINGS | {"lease_timeout_s": LEASE_S, "work_max_wait_s": 10.0}
    settings = make_settings(database, tmp_path_factory.mktemp("server"), **timings)
    with serving(settings) as running:
        yield running


@pytest.fixture(scope="module")
def pilot_token(server: RunningServer) -> str:
    return server.token(server.add_user(), "pilot")


def submit(client: httpx.Client, jdl: str) -> dict:
    reply = client.post("/api/v1/jobs", json={"jdl": jdl})
    assert reply.status_code == 201, reply.text
    result: dict = reply.json()
    return result


def test_register_returns_pilot_id_and_timings(server: RunningServer, pilot_token: str) -> None:
    pilot = ProtocolPilot(server, pilot_token, tag=new_tag())
    reg = pilot.registration
    assert reg["heartbeat_interval_s"] == 0.5
    assert reg["lease_timeout_s"] == LEASE_S
    assert reg["poll_wait_s"] == 10.0
    listed = server.user_client().get("/api/v1/pilots").json()["pilots"]
    mine = next(p for p in listed if p["id"] == pilot.pilot_id)
    assert mine["state"] == "idle" and mine["queue"] == "q" and mine["batch_job_id"] == "b1"
    assert mine["ad"]["TestTag"] == pilot.tag


def test_pilot_routes_refuse_user_tokens_and_user_routes_refuse_pilot_tokens(
    server: RunningServer, pilot_token: str
) -> None:
    user = server.user_client()
    assert user.post("/api/v1/pilot/register", json={"ad": {}}).status_code == 403
    assert server.client(pilot_token).get("/api/v1/jobs").status_code == 403


def test_work_hands_out_a_job_spec_with_a_new_attempt(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    body = (
        'Executable = "/bin/echo"; Arguments = "-n \\"two words\\" x";'
        ' Environment = {"MODE=fast", "EQ=a=b"}; StdOutput = "out"; StdError = "out";'
        ' OutputSandbox = {"out"}; MaxWallTime = 60;'
    )
    job = submit(alice, tagged_jdl(tag, body))["id"]
    specs = pilot.work(max_jobs=4)
    assert [s["job_id"] for s in specs] == [str(job)]
    spec = specs[0]
    assert spec["attempt"] == 1 and spec["executable"] == "/bin/echo"
    assert spec["arguments"] == ["-n", "two words", "x"]
    assert spec["environment"] == {"MODE": "fast", "EQ": "a=b"}
    assert spec["stdout"] == "out" and spec["stderr"] == "out"
    assert spec["output_sandbox"] == ["out"] and spec["max_wall_time_s"] == 60
    status = job_state(alice, job)
    assert status["state"] == "READY" and status["attempt"] == 1
    assert pilot.work() == []


def test_work_long_poll_returns_as_soon_as_a_job_is_submitted(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    got: dict[str, object] = {}

    def poll() -> None:
        start = time.monotonic()
        got["jobs"] = pilot.work(wait_s=10.0)
        got["at"] = time.monotonic() - start

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)  # let the request reach the server and start waiting
    submitted_at = time.monotonic()
    job = submit(alice, tagged_jdl(tag))["id"]
    thread.join(timeout=30)
    assert [s["job_id"] for s in got["jobs"]] == [str(job)]  # type: ignore[union-attr]
    # Well before the 10 s the request was allowed to wait.
    assert time.monotonic() - submitted_at < 5.0


def test_work_without_a_matching_job_waits_then_answers_empty(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    pilot = ProtocolPilot(server, pilot_token, tag=new_tag())
    submit(alice, tagged_jdl(new_tag()))  # some other pilot's job
    start = time.monotonic()
    assert pilot.work(wait_s=0.5) == []
    assert time.monotonic() - start >= 0.45


def test_pilot_requirements_are_matched_symmetrically(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    job = submit(alice, tagged_jdl(tag))["id"]
    group = job_state(alice, job)["owner_group"]  # a job's VO is its owner's group
    cms_only = ProtocolPilot(
        server, pilot_token, tag=tag, Requirements={"expr": 'other.VirtualOrganisation == "cms"'}
    )
    assert cms_only.work() == []
    ours = ProtocolPilot(
        server, pilot_token, tag=tag, Requirements={"expr": f'other.VO == "{group}"'}
    )
    assert [s["job_id"] for s in ours.work(max_jobs=5)] == [str(job)]


def test_reports_move_the_job_and_are_idempotent(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    (spec,) = pilot.work()
    started = secrets.token_hex(16)
    assert pilot.report(spec, "started", report_id=started)["outcome"] == "accepted"
    assert job_state(alice, job)["state"] == "RUNNING"
    assert pilot.report(spec, "started", report_id=started)["outcome"] == "duplicate"
    done = {
        "report_id": secrets.token_hex(16),
        "job_id": spec["job_id"],
        "attempt": spec["attempt"],
        "type": "finished",
        "status": "failed",
        "reason": "exit code 3",
        "exit_code": 3,
        "payload_started": True,
    }
    assert pilot.reports([done]) == [{"report_id": done["report_id"], "outcome": "accepted"}]
    assert pilot.reports([done])[0]["outcome"] == "duplicate"
    status = job_state(alice, job)
    assert (status["state"], status["done_code"], status["exit_code"]) == ("DONE", "failed", 3)
    pilots = server.user_client().get("/api/v1/pilots").json()["pilots"]
    assert next(p for p in pilots if p["id"] == pilot.pilot_id)["jobs_run"] == 1


def test_heartbeat_delivers_a_cancel_once_and_the_cancelled_report_ends_the_job(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    (spec,) = pilot.work()
    pilot.report(spec, "started")
    assert alice.post(f"/api/v1/jobs/{job}/cancel").json()["cancel_requested"] == [job]
    commands = pilot.heartbeat([spec])
    assert commands == [
        {
            "action": "cancel",
            "job_id": str(job),
            "attempt": 1,
            "reason": "cancelled by the user",
        }
    ]
    assert pilot.heartbeat([spec]) == []
    result = pilot.report(spec, "finished", status="cancelled", reason="cancelled by the user")
    assert result["outcome"] == "accepted"
    assert job_state(alice, job)["state"] == "CANCELLED"


def test_drain_command_is_delivered_once(server: RunningServer, pilot_token: str) -> None:
    pilot = ProtocolPilot(server, pilot_token, tag=new_tag())
    admin = server.user_client(admin=True)
    reply = admin.post(
        f"/api/v1/admin/pilots/{pilot.pilot_id}/drain", json={"reason": "upgrade", "grace_s": 5}
    )
    assert reply.status_code == 200, reply.text
    assert pilot.heartbeat() == [{"action": "drain", "reason": "upgrade", "grace_s": 5.0}]
    assert pilot.heartbeat(state="draining") == []


def test_output_upload_is_served_by_the_output_routes(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    (spec,) = pilot.work()
    pilot.report(spec, "started")
    reply = pilot.client.put(
        pilot.path(f"/jobs/{job}/attempts/{spec['attempt']}/output"),
        params={"name": "res/out.txt"},
        content=b"result\n",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status_code == 201, reply.text
    pilot.finish(spec)
    assert alice.get(f"/api/v1/jobs/{job}/output/res/out.txt").content == b"result\n"


def test_lost_lease_requeues_and_the_stale_attempt_is_refused(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    zombie = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    (spec,) = zombie.work()
    zombie.report(spec, "started")
    zombie.report(spec, "payload_started")
    # The zombie stops heartbeating: after the lease the job waits again (a deep retry).
    wait_for(lambda: job_state(alice, job)["state"] == "WAITING", timeout=30, what="requeue")
    status = job_state(alice, job)
    assert status["retries_used"] == 1 and status["shallow_retries_used"] == 0
    # The pilot was declared failed (lease expired): its routes answer 404 so that it
    # registers again.
    assert zombie.client.post(zombie.path("/heartbeat"), json={"jobs": []}).status_code == 404
    fresh = ProtocolPilot(server, pilot_token, tag=tag)
    # The lease task tells the dispatcher right after its commit: poll until it has.
    (again,) = wait_for(fresh.work, timeout=30, what="the requeued job handed out")
    assert again["attempt"] == 2
    late = ProtocolPilot(server, pilot_token, tag=tag)  # the zombie, registered again
    result = late.report(spec, "finished", status="done", exit_code=0)
    assert result["outcome"] == "stale"
    upload = late.client.put(
        late.path(f"/jobs/{job}/attempts/1/output"), params={"name": "x"}, content=b"late"
    )
    assert upload.status_code == 409
    assert job_state(alice, job)["state"] == "READY"
    assert fresh.finish(again)["outcome"] == "accepted"
    assert job_state(alice, job)["state"] == "DONE"


def test_prefetch_hands_out_a_queue_beyond_the_free_slots_each_job_once(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag, Cpus=2, Memory=8000)
    node = tagged_jdl(tag, 'Executable = "/bin/true";')
    ids = {submit(alice, node)["id"] for _ in range(5)}
    big = submit(alice, tagged_jdl(tag, 'Executable = "/bin/true"; CpuNumber = 3;'))["id"]
    first = pilot.work(max_jobs=2, free_cores=2, prefetch=2)
    assert len(first) == 4  # two for the free slots, two to queue
    rest = pilot.work(max_jobs=0, free_cores=0, prefetch=8)
    handed = [int(s["job_id"]) for s in first + rest]
    assert sorted(handed) == sorted(ids)  # each once; the 3-core job never fits this slot
    assert big not in handed
    assert all(job_state(alice, j)["state"] == "READY" for j in ids)
    assert pilot.work(max_jobs=0, free_cores=0, prefetch=0) == []


def test_a_batch_of_finished_reports_ends_every_attempt_and_repeats_are_duplicates(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    jobs = [submit(alice, tagged_jdl(tag))["id"] for _ in range(3)]
    specs = pilot.work(max_jobs=3)
    assert len(specs) == 3
    ok, failed, refused = specs

    def report(spec: dict, kind: str, **fields: object) -> dict:
        return {
            "report_id": secrets.token_hex(16),
            "job_id": spec["job_id"],
            "attempt": spec["attempt"],
            "type": kind,
            "time": time.time(),
            **fields,
        }

    batch = [report(s, "started") for s in (ok, failed)]
    batch += [report(s, "payload_started") for s in (ok, failed)]
    batch += [
        report(ok, "finished", status="done", exit_code=0, cpu_s=0.5, wall_s=1.0),
        report(failed, "finished", status="failed", exit_code=3, reason="exit code 3"),
        report(refused, "finished", status="refused", reason="does not fit"),
        report(ok, "finished", status="failed", exit_code=1),  # a second end: stale
    ]
    results = {r["report_id"]: r["outcome"] for r in pilot.reports(batch)}
    assert [results[r["report_id"]] for r in batch] == ["accepted"] * 7 + ["stale"]
    states = {j: job_state(alice, j) for j in jobs}
    by_spec = {int(s["job_id"]): s for s in specs}
    assert states[int(ok["job_id"])]["state"] == "DONE"
    assert states[int(ok["job_id"])]["done_code"] == "ok"
    assert states[int(failed["job_id"])]["done_code"] == "failed"
    assert states[int(failed["job_id"])]["exit_code"] == 3
    assert states[int(refused["job_id"])]["state"] == "WAITING"
    assert set(by_spec) == set(jobs)
    events = alice.get(f"/api/v1/jobs/{ok['job_id']}/events").json()["events"]
    assert [e["state_to"] for e in events][-3:] == ["RUNNING", "RUNNING", "DONE"]
    again = {r["report_id"]: r["outcome"] for r in pilot.reports(batch)}
    assert set(again.values()) == {"duplicate"}


def test_an_end_alone_implies_the_start_and_keeps_the_whole_history(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    # A short job's progress reports may never be sent: the end stands for them.
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    deep, shallow = (submit(alice, tagged_jdl(tag))["id"] for _ in range(2))
    specs = {int(s["job_id"]): s for s in pilot.work(max_jobs=2)}
    outcomes = pilot.reports(
        [
            {
                "report_id": secrets.token_hex(16),
                "job_id": specs[deep]["job_id"],
                "attempt": specs[deep]["attempt"],
                "type": "finished",
                "status": "done",
                "exit_code": 0,
                "payload_started": True,
            },
            {
                "report_id": secrets.token_hex(16),
                "job_id": specs[shallow]["job_id"],
                "attempt": specs[shallow]["attempt"],
                "type": "finished",
                "status": "setup_failed",
                "reason": "input sandbox: no such file",
                "payload_started": False,
            },
        ]
    )
    assert [o["outcome"] for o in outcomes] == ["accepted", "accepted"]
    status = job_state(alice, deep)
    assert (status["state"], status["done_code"], status["exit_code"]) == ("DONE", "ok", 0)
    events = [e["event"] for e in alice.get(f"/api/v1/jobs/{deep}/events").json()["events"]]
    assert events[events.index("Match") :] == ["Match", "Running", "ReallyRunning", "Done"]
    # Set-up failed before the payload: started, never ReallyRunning, a shallow retry.
    status = job_state(alice, shallow)
    assert (status["state"], status["shallow_retries_used"]) == ("WAITING", 1)
    events = [e["event"] for e in alice.get(f"/api/v1/jobs/{shallow}/events").json()["events"]]
    assert "Running" in events and "ReallyRunning" not in events


def test_progress_and_end_in_one_batch_write_the_history_of_separate_batches(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    # The server applies a start, payload start and end that arrive together as one update
    # (lifecycle's ``via``); the job's history and row must not tell the difference.
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    ids = [submit(alice, tagged_jdl(tag))["id"] for _ in range(3)]
    specs = {int(s["job_id"]): s for s in pilot.work(max_jobs=3)}
    stepwise, together, running = (specs[i] for i in ids)

    def report(spec: dict, kind: str, **fields: object) -> dict:
        return {
            "report_id": secrets.token_hex(16),
            "job_id": spec["job_id"],
            "attempt": spec["attempt"],
            "type": kind,
            **fields,
        }

    end = {"status": "done", "exit_code": 0, "payload_started": True, "cpu_s": 0.1}
    batches = [
        [report(stepwise, "started"), report(running, "started")],
        [report(stepwise, "payload_started")],
        [report(stepwise, "finished", **end)],
        # READY -> RUNNING -> DONE in one batch; RUNNING, payload start and end in one batch.
        [
            report(together, "finished", **end),
            report(running, "payload_started"),
            report(running, "finished", **end),
        ],
    ]
    for batch in batches:
        assert {o["outcome"] for o in pilot.reports(batch)} == {"accepted"}

    def history(job_id: int) -> list[tuple]:
        events = alice.get(f"/api/v1/jobs/{job_id}/events").json()["events"]
        fields = ("event", "state_from", "state_to", "reason", "attempt", "source")
        return [tuple(e[f] for f in fields) for e in events]

    assert history(ids[0])[-4:] == [
        (
            "Match",
            "WAITING",
            "READY",
            f"matched pilot {pilot.pilot_id}",
            1,
            f"pilot:{pilot.pilot_id}",
        ),
        ("Running", "READY", "RUNNING", "the pilot started the job", 1, f"pilot:{pilot.pilot_id}"),
        (
            "ReallyRunning",
            "RUNNING",
            "RUNNING",
            "the payload started",
            1,
            f"pilot:{pilot.pilot_id}",
        ),
        ("Done", "RUNNING", "DONE", "", 1, f"pilot:{pilot.pilot_id}"),
    ]
    assert history(ids[1]) == history(ids[0]) == history(ids[2])
    rows = [job_state(alice, i) for i in ids]
    for row in rows:
        assert row["started_at"] is not None and row["finished_at"] is not None
    keys = ("state", "done_code", "exit_code", "reason", "attempt", "retries_used")
    assert len({tuple(row.get(k) for k in keys) for row in rows}) == 1, rows


def test_an_end_keeps_an_earlier_peek_and_writes_the_usage_it_carries(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    from sqlalchemy import select

    from pilotwms.server.db import attempts

    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    (spec,) = pilot.work()
    assert pilot.report(spec, "peek", stdout_tail="event 9/10\n")["outcome"] == "accepted"
    end = {"status": "done", "exit_code": 0, "cpu_s": 1.5, "wall_s": 2, "payload_started": True}
    assert pilot.report(spec, "finished", **end)["outcome"] == "accepted"
    with server.db.read() as conn:
        row = conn.execute(select(attempts).where(attempts.c.job_id == job)).one()
    assert (row.state, row.exit_code, row.payload_started) == ("done", 0, True)
    assert (row.stdout_tail, row.cpu_s, row.wall_s, row.max_rss_mb) == (
        "event 9/10\n",
        1.5,
        2.0,
        None,
    )
    assert row.finished_at is not None and row.finished_at.tzinfo is not None


def test_refused_job_is_requeued_without_counting_a_retry(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    (spec,) = pilot.work()
    pilot.report(spec, "finished", status="refused", reason="does not fit")
    status = job_state(alice, job)
    assert status["state"] == "WAITING"
    # A refused attempt never started: its end implies no start.
    events = [e["event"] for e in alice.get(f"/api/v1/jobs/{job}/events").json()["events"]]
    assert "Running" not in events
    assert (status["retries_used"], status["shallow_retries_used"]) == (0, 0)
    assert pilot.work()[0]["attempt"] == 2


def test_setup_failures_past_the_shallow_limit_abort_with_glite_reason(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(
        alice, tagged_jdl(tag, 'Executable = "/bin/true"; ShallowRetryCount = 1; RetryCount = 0;')
    )["id"]
    for _ in range(2):
        (spec,) = wait_for(pilot.work, timeout=30, what="the job again")
        pilot.report(spec, "finished", status="setup_failed", reason="sandbox unreachable")
    status = job_state(alice, job)
    assert status["state"] == "ABORTED"
    assert status["reason"].endswith("hit job shallow retry count (1)")


def test_deregistration_requeues_unreported_attempts(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    pilot.work()
    reply = pilot.client.request("DELETE", pilot.path(), json={"reason": "idle for 600 s"})
    assert reply.status_code == 200
    assert job_state(alice, job)["state"] == "WAITING"
    listed = server.user_client().get("/api/v1/pilots", params={"state": "finished"}).json()
    finished = next(p for p in listed["pilots"] if p["id"] == pilot.pilot_id)
    assert finished["exit_reason"] == finished["reason"] == "idle for 600 s"


def test_agent_zipapp_is_served_with_its_version(
    server: RunningServer, pilot_token: str, tmp_path: Path
) -> None:
    from pilotwms.agent import AGENT_VERSION

    reply = server.client(pilot_token).get("/api/v1/pilot/agent.pyz")
    assert reply.status_code == 200
    assert reply.headers["X-Pilotwms-Agent-Version"] == AGENT_VERSION
    path = tmp_path / "agent.pyz"
    path.write_bytes(reply.content)
    out = subprocess.run(
        [sys.executable, str(path), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and AGENT_VERSION in out.stdout


def test_peek_is_delivered_to_the_pilot_and_its_answer_is_readable(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    assert alice.post(f"/api/v1/jobs/{job}/peek").status_code == 409  # nobody runs it yet
    (spec,) = pilot.work()
    pilot.report(spec, "started")
    assert alice.post(f"/api/v1/jobs/{job}/peek").status_code == 200
    assert pilot.heartbeat([spec]) == [{"action": "peek", "job_id": str(job), "attempt": 1}]
    pilot.report(spec, "peek", stdout_tail="event 900/1000\n")
    assert alice.get(f"/api/v1/jobs/{job}/peek").json()["stdout_tail"] == "event 900/1000\n"


def test_forgotten_report_ids_are_still_refused_once_the_attempt_ended(
    server: RunningServer, pilot_token: str, alice: httpx.Client
) -> None:
    from datetime import timedelta

    from pilotwms.server.db import utcnow
    from pilotwms.server.logic.leases import prune_reports

    tag = new_tag()
    pilot = ProtocolPilot(server, pilot_token, tag=tag)
    job = submit(alice, tagged_jdl(tag))["id"]
    (spec,) = pilot.work()
    finished = {
        "report_id": secrets.token_hex(16),
        "job_id": spec["job_id"],
        "attempt": spec["attempt"],
        "type": "finished",
        "status": "done",
        "exit_code": 0,
    }
    assert pilot.reports([finished])[0]["outcome"] == "accepted"
    with server.db.write() as conn:
        assert prune_reports(conn, before=utcnow() + timedelta(seconds=1)) >= 1
    assert pilot.reports([finished])[0]["outcome"] == "stale"
    assert job_state(alice, job)["state"] == "DONE"
