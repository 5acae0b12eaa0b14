"""The pilot runner against a fake server over real HTTP, with real jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pilotwms.agent import AGENT_VERSION
from pilotwms.agent.jobspec import parse_job_spec
from pilotwms.agent.pilot import _MAX_QUEUED_PER_SLOT, EXIT_OK, Pilot, WorkDirBusy
from pilotwms.agent.protocol import PilotClient
from pilotwms.agent.settings import AgentSettings
from pilotwms.agent.slot import SlotFacts
from pilotwms.agent.transport import Backoff, Transport

from .conftest import wait_for
from .fakewms import FakeWMS

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def wms() -> Iterator[FakeWMS]:
    server = FakeWMS()
    server.start()
    yield server
    server.stop()


def facts(cores: int = 2) -> SlotFacts:
    return SlotFacts(
        cores=cores,
        cores_source="test",
        memory_mb=4000,
        disk_mb=1000,
        hostname="wn",
        arch="x86_64",
        os_name="Linux",
        os_id="linux",
        os_version_id="1",
        os_codename="",
        python_version="3",
        lrms_type="fork",
        batch_id="b1",
        batch_time_left_s=None,
        gpus=[],
    )


class RunningPilot:
    """A pilot in a thread, with its exit code once it ends."""

    def __init__(self, wms: FakeWMS, tmp_path: Path, cores: int = 2, **overrides: Any):
        options: dict[str, Any] = {
            "server": wms.url,
            "token": wms.token,
            "work_dir": str(tmp_path / "pilot"),
            "site": "TEST",
            "queue": "q1",
            "wait_term": 60.0,
            "cancel_grace": 1.0,
            "sigterm_grace": 1.0,
        }
        options.update(overrides)
        settings = AgentSettings(**options)
        transport = Transport(settings.server, settings.token, timeout=5)
        self.pilot = Pilot(
            settings,
            PilotClient(transport),
            facts(cores),
            backoff=Backoff(base=0.1, cap=0.5),
            base_env={"PATH": os.environ["PATH"]},
        )
        self.code: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.pilot.run()

    def join(self, timeout: float = 30.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "pilot did not exit"
        return self.code


def job(job_id: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"job_id": job_id, "attempt": 1, "executable": "/bin/true"}
    spec.update(extra)
    return spec


def finished(wms: FakeWMS, job_id: str) -> list[dict[str, Any]]:
    return wms.reports_of(job_id, "finished")


def test_pilot_registers_runs_a_job_reports_and_exits_when_idle(
    wms: FakeWMS, tmp_path: Path
) -> None:
    digest = wms.add_blob(b'#!/bin/sh\necho "$@" > out.txt\n')
    wms.add_job(
        job(
            "j1",
            executable="run.sh",
            arguments=["a b", "c"],
            input_sandbox=[{"name": "run.sh", "digest": digest}],
            output_sandbox=["out.txt", "nothing.txt"],
        )
    )
    pilot = RunningPilot(wms, tmp_path, wait_term=1.0)
    assert pilot.join() == EXIT_OK
    ((pilot_id, registration),) = wms.pilots.items()
    assert registration["agent_version"] == AGENT_VERSION
    assert registration["queue"] == "q1" and registration["batch_id"] == "b1"
    assert registration["ad"]["GlueCEUniqueID"] == "wn:pilotwms/TEST-q1"
    (report,) = finished(wms, "j1")
    assert report["status"] == "done" and report["exit_code"] == 0
    assert report["missing_outputs"] == ["nothing.txt"]
    # Progress reports go out as soon as made; one still waiting (a batch was on its way)
    # when the job ended is replaced by the end, which implies it (payload_started: true).
    kinds = [r["type"] for r in wms.reports_of("j1")]
    order = ["started", "payload_started", "finished"]
    assert kinds[-1] == "finished" and kinds == sorted(kinds, key=order.index)
    assert report["payload_started"] is True
    assert wms.outputs[("j1", 1, "out.txt")] == b"a b c\n"
    assert "idle" in wms.deregistered[pilot_id]
    request = wms.work_requests[0]
    assert request["free_cores"] == 2 and request["max_jobs"] == 2
    assert request["ad_update"]["GlueCEStateFreeCPUs"] == 2
    assert (tmp_path / "pilot" / "spool" / "journal.jsonl").stat().st_size == 0


def test_short_jobs_are_prefetched_and_their_reports_coalesced(
    wms: FakeWMS, tmp_path: Path
) -> None:
    count = 60
    for n in range(count):
        wms.add_job(job(f"t{n}"))
    pilot = RunningPilot(wms, tmp_path, wait_term=1.0)
    wait_for(lambda: all(finished(wms, f"t{n}") for n in range(count)), what="all jobs")
    assert pilot.join() == EXIT_OK
    order = ["started", "payload_started", "finished"]
    sent = 0
    for n in range(count):
        (report,) = finished(wms, f"t{n}")
        assert report["status"] == "done" and report["payload_started"] is True
        kinds = [r["type"] for r in wms.reports_of(f"t{n}")]
        # In order, ending with the end; the progress reports still waiting when the job ended
        # were replaced by it (the end implies them).
        assert kinds[-1] == "finished" and kinds == sorted(kinds, key=order.index)
        sent += len(kinds)
    assert sent < 3 * count
    # Once the first jobs showed that the work is short, requests asked for a queue too.
    assert any(r.get("prefetch", 0) > 0 for r in wms.work_requests)
    assert all(r.get("prefetch", 0) <= 2 * _MAX_QUEUED_PER_SLOT for r in wms.work_requests)
    assert wms.report_posts < 3 * count / 2


def test_a_long_job_among_streaming_short_ones_reports_its_start_while_it_runs(
    wms: FakeWMS, tmp_path: Path
) -> None:
    # While jobs are queued, progress reports are held until the next batch goes out (a short
    # job's end replaces them); a job still running then must have them sent.
    wms.add_job(job("long", executable="/bin/sleep", arguments=["30"]))
    for n in range(20):
        wms.add_job(job(f"s{n}"))
    pilot = RunningPilot(wms, tmp_path, prefetch=8)
    wait_for(lambda: all(finished(wms, f"s{n}") for n in range(20)), what="the short jobs")
    wait_for(
        lambda: [r["type"] for r in wms.reports_of("long")] == ["started", "payload_started"],
        what="the long job's progress reports",
    )
    with wms.lock:
        wms.commands.append({"action": "drain", "reason": "test", "grace_s": 0})
    assert pilot.join() == EXIT_OK
    assert [r["type"] for r in wms.reports_of("long")][-1] == "finished"
    assert finished(wms, "long")[0]["status"] == "drained"


def test_held_progress_reports_keep_their_order_when_the_queue_empties(
    wms: FakeWMS, tmp_path: Path
) -> None:
    # A job's start, made while another job was queued, is held; its payload start, made
    # after the queue emptied, must be held behind it rather than overtake it.
    settings = AgentSettings(server=wms.url, token=wms.token, work_dir=str(tmp_path / "p"))
    pilot = Pilot(settings, PilotClient(Transport(wms.url, wms.token)), facts())
    spec, other = (parse_job_spec(job(name)) for name in ("a", "b"))
    runner = SimpleNamespace(spec=spec, result=None)
    pilot.queued.append(other)
    pilot._on_event("started", runner)  # type: ignore[arg-type]
    pilot.queued.popleft()
    pilot._on_event("payload_started", runner)  # type: ignore[arg-type]
    assert len(pilot.spool) == 0  # both held
    pilot._release_held()
    assert [r["type"] for r in pilot.spool.pending()] == ["started", "payload_started"]
    pilot.spool.close()


def test_queued_jobs_are_listed_in_heartbeats_cancellable_and_refused_on_drain(
    wms: FakeWMS, tmp_path: Path
) -> None:
    for n in range(2):
        wms.add_job(job(f"long{n}", executable="/bin/sleep", arguments=["30"]))
    for n in range(3):
        wms.add_job(job(f"q{n}"))
    pilot = RunningPilot(wms, tmp_path, prefetch=3)
    queued = {f"q{n}" for n in range(3)}

    def listed() -> bool:
        with wms.lock:
            return any(queued <= {j["job_id"] for j in h["jobs"]} for h in wms.heartbeats)

    wait_for(listed, what="a heartbeat listing the queued jobs")
    assert not any(wms.reports_of(q) for q in queued)  # queued, not started
    with wms.lock:
        wms.commands.append({"action": "cancel", "job_id": "q0", "attempt": 1, "reason": "user"})
    wait_for(lambda: finished(wms, "q0"), what="the queued job cancelled")
    assert finished(wms, "q0")[0]["status"] == "cancelled"
    queued.discard("q0")
    with wms.lock:
        wms.commands.append({"action": "drain", "reason": "test", "grace_s": 0})
    wait_for(lambda: all(finished(wms, f"long{n}") for n in range(2)), what="drained jobs")
    assert pilot.join() == EXIT_OK
    for q in queued:
        (report,) = wms.reports_of(q)
        assert report["type"] == "finished" and report["status"] == "refused"
        assert report["payload_started"] is False
    assert {finished(wms, f"long{n}")[0]["status"] for n in range(2)} == {"drained"}


def test_several_jobs_per_request_fill_the_slots(wms: FakeWMS, tmp_path: Path) -> None:
    for n in range(3):
        wms.add_job(job(f"s{n}", executable="/bin/sleep", arguments=["0.5"]))
    pilot = RunningPilot(wms, tmp_path, wait_term=1.0)
    wait_for(lambda: all(finished(wms, f"s{n}") for n in range(3)), what="three jobs")
    assert pilot.join() == EXIT_OK
    assert all(finished(wms, f"s{n}")[0]["status"] == "done" for n in range(3))
    first_batch = [r for r in wms.work_requests if r["max_jobs"] == 2]
    assert first_batch, "the pilot never asked for two jobs at once"


def test_cancel_and_peek_commands_from_the_heartbeat(wms: FakeWMS, tmp_path: Path) -> None:
    wms.add_job(
        job(
            "c1",
            executable="/bin/sh",
            arguments=["-c", "echo working; exec sleep 300"],
            stdout="out",
        )
    )
    pilot = RunningPilot(wms, tmp_path)
    wait_for(lambda: wms.reports_of("c1", "payload_started"), what="the payload to start")
    wait_for(lambda: any(hb["jobs"] for hb in wms.heartbeats), what="a heartbeat with the job")
    wms.commands.append({"action": "peek", "job_id": "c1", "attempt": 1})
    wait_for(
        lambda: any("working" in r["stdout_tail"] for r in wms.reports_of("c1", "peek")),
        what="the peek report",
    )
    wms.commands.append({"action": "cancel", "job_id": "c1", "attempt": 1})
    (report,) = wait_for(lambda: finished(wms, "c1"), what="the cancelled report")
    assert report["status"] == "cancelled"
    wms.commands.append({"action": "drain", "reason": "test over"})
    assert pilot.join() == EXIT_OK


def test_server_outage_keeps_the_job_and_delivers_its_report_later(
    wms: FakeWMS, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    wms.add_job(
        job(
            "o1",
            executable="/bin/sh",
            arguments=["-c", f"while [ ! -e {marker} ]; do sleep 0.05; done; echo fine"],
        )
    )
    pilot = RunningPilot(wms, tmp_path)
    wait_for(lambda: wms.reports_of("o1", "payload_started"), what="the payload to start")
    port = wms.port
    wms.stop()  # the server goes away while the job runs
    marker.touch()
    wait_for(pilot.pilot.spool.pending, what="the report to be spooled")
    wms.start(port)  # the server returns on the same address
    (report,) = wait_for(lambda: finished(wms, "o1"), timeout=30, what="the late report")
    assert report["status"] == "done"
    wms.commands.append({"action": "drain", "reason": "test over"})
    assert pilot.join() == EXIT_OK


def test_drain_command_kills_after_grace_and_reports_drained(wms: FakeWMS, tmp_path: Path) -> None:
    wms.add_job(job("d1", executable="/bin/sleep", arguments=["300"]))
    pilot = RunningPilot(wms, tmp_path)
    wait_for(lambda: wms.reports_of("d1", "payload_started"), what="the payload to start")
    wms.commands.append({"action": "drain", "reason": "agent upgrade", "grace_s": 0.2})
    assert pilot.join() == EXIT_OK
    (report,) = finished(wms, "d1")
    assert report["status"] == "drained" and report["payload_started"] is True


def test_sigterm_drains_with_the_configured_grace(wms: FakeWMS, tmp_path: Path) -> None:
    wms.add_job(job("t1", executable="/bin/sleep", arguments=["300"]))
    pilot = RunningPilot(wms, tmp_path, sigterm_grace=0.3)
    wait_for(lambda: wms.reports_of("t1", "payload_started"), what="the payload to start")
    pilot.pilot.handle_signal(signal.SIGTERM)
    assert pilot.join() == EXIT_OK
    assert finished(wms, "t1")[0]["status"] == "drained"
    assert "SIGTERM" in next(iter(wms.deregistered.values()))


def test_bad_and_unfitting_specs_are_reported_not_run(wms: FakeWMS, tmp_path: Path) -> None:
    wms.add_job({"job_id": "bad", "attempt": 2, "executable": 7})
    wms.add_job(job("big", whole_node=True, max_wall_time_s=10))
    wms.add_job(job("long", max_wall_time_s=10**6))
    pilot = RunningPilot(wms, tmp_path, wait_term=1.0, max_runtime=3600)
    assert pilot.join() == EXIT_OK
    assert finished(wms, "bad")[0]["status"] == "setup_failed"
    assert finished(wms, "bad")[0]["attempt"] == 2
    assert finished(wms, "big")[0]["status"] == "done"
    refused = finished(wms, "long")[0]
    assert refused["status"] == "refused" and "time left" in refused["reason"]


def test_stale_reports_are_dropped(wms: FakeWMS, tmp_path: Path) -> None:
    wms.stale.add(("z1", 1))
    wms.add_job(job("z1"))
    pilot = RunningPilot(wms, tmp_path, wait_term=1.0)
    assert pilot.join() == EXIT_OK
    assert finished(wms, "z1") == []
    assert len(pilot.pilot.spool) == 0


def test_agent_as_a_subprocess_exits_cleanly_on_sigterm(wms: FakeWMS, tmp_path: Path) -> None:
    wms.add_job(job("p1", executable="/bin/sleep", arguments=["300"]))
    env = dict(os.environ, PYTHONPATH=str(SRC), PILOTWMS_TOKEN=wms.token)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotwms.agent", "--server", wms.url,
         "--work-dir", str(tmp_path / "w"), "--sigterm-grace", "0.5", "--cancel-grace", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: wms.reports_of("p1", "payload_started"), what="the payload to start")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output.decode()
    assert finished(wms, "p1")[0]["status"] == "drained"
    assert b"pilot-token" not in output  # the token is never logged


def test_a_pilot_the_server_forgot_registers_again(wms: FakeWMS, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    wms.add_job(
        job(
            "r1",
            executable="/bin/sh",
            arguments=["-c", f"while [ ! -e {marker} ]; do sleep 0.05; done"],
        )
    )
    pilot = RunningPilot(wms, tmp_path)
    wait_for(lambda: wms.reports_of("r1", "payload_started"), what="the payload to start")
    with wms.lock:
        wms.pilots.clear()  # e.g. the server declared it dead
    wait_for(lambda: len(wms.pilots) == 1, what="a second registration")
    marker.touch()
    (report,) = wait_for(lambda: finished(wms, "r1"), what="the report after re-registering")
    assert report["status"] == "done"
    assert list(wms.pilots) == ["p2"]
    wms.commands.append({"action": "drain", "reason": "test over"})
    assert pilot.join() == EXIT_OK


def test_two_pilots_cannot_share_a_work_directory(wms: FakeWMS, tmp_path: Path) -> None:
    first = RunningPilot(wms, tmp_path, wait_term=0.5)
    with pytest.raises(WorkDirBusy):
        Pilot(
            AgentSettings(server=wms.url, token=wms.token, work_dir=str(tmp_path / "pilot")),
            PilotClient(Transport(wms.url, wms.token)),
            facts(),
        )
    assert first.join() == EXIT_OK
