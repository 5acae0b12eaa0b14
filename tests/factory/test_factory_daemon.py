"""The factory daemon with an in-memory server and the REAL local backend: stub agents run as
real processes, the server side (demand, pilot records, tokens, logs) is a fake of ``ServerApi``
that registers a pilot as soon as its process runs."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pilotwms.factory.backends import BatchState, LocalBackend
from pilotwms.factory.config import FactoryConfig, parse_factory_config
from pilotwms.factory.daemon import Factory
from pilotwms.factory.demand import TaskQueueSnapshot
from pilotwms.factory.pilots import AgentReport, AgentState
from pilotwms.factory.server_api import (
    BatchStateChange,
    DemandSnapshot,
    PilotToken,
    RegisteredPilot,
)
from pilotwms.factory.state import STATUS_FILE, FactoryState

from .conftest import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

#: A stand-in agent: writes its environment's batch id, then sleeps until SIGTERM (or exits).
STUB = """\
import os, signal, sys, time
print("stub agent", os.environ.get("PILOTWMS_BATCH_ID"), flush=True)
if os.environ.get("STUB_EXIT"):
    print("cannot reach the server", file=sys.stderr, flush=True)
    sys.exit(int(os.environ["STUB_EXIT"]))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(0.1)
"""

ANY = "[ Requirements = true; Rank = 0; ]"
NEEDS_X = (
    '[ Requirements = Member("x", other.GlueHostApplicationSoftwareRunTimeEnvironment); Rank = 0; ]'
)


@dataclass
class FakeServer:
    """The admin API in memory. Pilots whose batch id is in ``alive`` are reported idle."""

    task_queues: list[TaskQueueSnapshot] = field(default_factory=list)
    alive: set[str] = field(default_factory=set)
    recorded: dict[str, tuple[str, str]] = field(default_factory=dict)
    states: list[tuple[str, BatchStateChange]] = field(default_factory=list)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    published: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    tokens: int = 0
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def demand(self) -> DemandSnapshot:
        pilots = tuple(
            RegisteredPilot(pid, queue, batch_id, AgentReport(AgentState.IDLE), "0.1.0")
            for batch_id, (pid, queue) in self.recorded.items()
            if batch_id in self.alive
        )
        return DemandSnapshot("0.1.0", tuple(self.task_queues), pilots)

    def record_pilots(
        self,
        queue: str,
        backend: str,
        batch_ids: Sequence[str],
        factory: str,
        log_paths: Mapping[str, Mapping[str, str]],
    ) -> dict[str, str]:
        assert set(log_paths) == set(batch_ids)
        for batch_id in batch_ids:
            self.recorded[batch_id] = (str(next(self._ids)), queue)
        return {b: self.recorded[b][0] for b in batch_ids}

    def batch_states(self, queue: str, changes: Sequence[BatchStateChange]) -> int:
        self.states.extend((queue, c) for c in changes)
        return len(changes)

    def pilot_token(self, lifetime_s: float, description: str) -> PilotToken:
        self.tokens += 1
        return PilotToken(f"pilot-token-{self.tokens}", str(self.tokens), 4e9)

    def upload_log(self, pilot_id: str, stream: str, text: str, total_bytes: int) -> None:
        self.logs[(pilot_id, stream)] = text

    def publish_queue(self, name: str, ad: Mapping[str, Any]) -> None:
        self.published[name] = ad

    def fetch_agent(self, dest_dir: Path) -> tuple[str, Path]:
        raise AssertionError("the installed agent has the server's version: nothing to fetch")


def _config(tmp_path: Path, stub: Path, **queues: dict[str, Any]) -> FactoryConfig:
    data: dict[str, Any] = {
        "factory": {"server_url": "http://127.0.0.1:9", "state_dir": str(tmp_path / "state")},
        "queues": {},
    }
    for name, extra in queues.items():
        queue: dict[str, Any] = {
            "backend": "local",
            "poll": 0.5,
            "wait_new": 0,
            "wait_term": 5,
            "options": {"python": sys.executable, "agent": str(stub)},
        }
        queue.update(extra)
        data["queues"][name] = queue
    return parse_factory_config(data)


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    path = tmp_path / "stub_agent.py"
    path.write_text(STUB)
    return path


@pytest.fixture
def cleanup(tmp_path: Path) -> Iterator[None]:
    """Every stub a test left running is stopped."""
    yield
    for log_dir in (tmp_path / "state" / "queues").glob("*"):
        ids = [p.name[len("pilot-") : -len(".out")] for p in log_dir.glob("pilot-*.out")]
        LocalBackend(log_dir=log_dir).terminate(ids, 5.0)


def _live(factory: Factory, queue: str) -> list[str]:
    return [r.batch_id for r in factory.state.live(queue)]


def _register_running(factory: Factory, server: FakeServer) -> None:
    """What real agents do: register (local pilots run from the moment they are submitted)."""
    server.alive = {r.batch_id for r in factory.state.live()}


def test_submits_within_limits_only_where_waiting_jobs_can_run(
    tmp_path: Path, stub: Path, cleanup: None
) -> None:
    config = _config(
        tmp_path,
        stub,
        tagged={"sched_max": 3, "ad": {"tags": ["x"]}},
        plain={"sched_min": 1, "sched_max": 4},
    )
    server = FakeServer([TaskQueueSnapshot("tq1", waiting=10, cores=1, ad=NEEDS_X)])
    factory = Factory(config, server)
    factory.publish_queues()
    assert server.published["tagged"]["Tags"] == ["x"]

    decided = factory.cycle()
    assert decided is not None
    assert len(_live(factory, "tagged")) == 3  # capped at sched_max
    assert len(_live(factory, "plain")) == 1  # sched_min keep-warm only: no job can run there
    assert "no waiting job can run here" in decided.decisions["plain"].reason
    warm = factory.state.live("plain")[0]
    assert warm.warm and not any(r.warm for r in factory.state.live("tagged"))
    assert set(server.recorded) == {r.batch_id for r in factory.state.live()}

    # The pilots register; with unchanged demand nothing more is submitted.
    _register_running(factory, server)
    for _ in range(3):
        factory.cycle()
    assert len(_live(factory, "tagged")) == 3 and len(_live(factory, "plain")) == 1
    status = json.loads((tmp_path / "state" / STATUS_FILE).read_text())
    assert status["queues"]["tagged"]["pilots"] == {"idle": 3}
    assert status["queues"]["plain"]["pilots"] == {"idle": 1}
    # The batch states reached the server, and the pilots' logs too.
    assert {c.state for _, c in server.states} == {"running"}
    # The logs that grew are uploaded (the stubs write nothing on stderr).

    def stdout() -> dict[tuple[str, str], str]:
        return {k: v for k, v in server.logs.items() if k[1] == "stdout"}

    wait_for(lambda: factory.cycle() and len(stdout()) == 4, what="log uploads")
    assert all("stub agent" in text for text in stdout().values())
    assert not any(stream == "stderr" for _, stream in server.logs)


def test_a_restarted_factory_keeps_tracking_its_pilots(
    tmp_path: Path, stub: Path, cleanup: None
) -> None:
    config = _config(tmp_path, stub, tagged={"sched_max": 2, "ad": {"tags": ["x"]}})
    server = FakeServer([TaskQueueSnapshot("tq1", waiting=5, cores=1, ad=NEEDS_X)])
    first = Factory(config, server)
    first.cycle()
    submitted = set(_live(first, "tagged"))
    assert len(submitted) == 2 and server.tokens == 1
    _register_running(first, server)

    again = Factory(config, server)  # a new process: only state.json links it to the pilots
    assert set(_live(again, "tagged")) == submitted
    again.cycle()
    again.cycle()
    assert set(_live(again, "tagged")) == submitted  # neither lost nor doubled
    assert server.tokens == 1  # the stored pilot token is still good

    # The pilots end; the restarted factory sees it and replaces them.
    again.cancel_pilots("tagged", "test")
    wait_for(
        lambda: again.cycle() and not (submitted & set(_live(again, "tagged"))),
        what="old pilots to end",
    )
    assert len(_live(again, "tagged")) == 2
    ended = [FactoryState.load(tmp_path / "state").pilots[f"tagged/{b}"] for b in submitted]
    assert {r.state for r in ended} == {BatchState.CANCELLED.value}
    assert all(r.logs_final for r in ended)


def test_pilots_dying_at_start_pause_the_queue_until_resumed(
    tmp_path: Path, stub: Path, cleanup: None
) -> None:
    config = _config(
        tmp_path,
        stub,
        broken={
            "sched_max": 2,
            "options": {
                "python": sys.executable,
                "agent": str(stub),
                "environment": {"STUB_EXIT": "3"},
            },
            "rate_limit": {"backoff_s": [0.0], "pause_after_start_failures": 2},
        },
    )
    server = FakeServer([TaskQueueSnapshot("tq1", waiting=5, cores=1, ad=ANY)])
    factory = Factory(config, server)
    wait_for(lambda: factory.cycle() and factory.queues["broken"].limiter.paused, what="pause")
    reason = factory.queues["broken"].limiter.paused_reason or ""
    assert "died at start" in reason and "cannot reach the server" in reason
    assert "pilotwms factory resume broken" in reason
    before = len(factory.state.pilots)
    factory.cycle()
    assert len(factory.state.pilots) == before  # paused: nothing submitted
    status = json.loads((tmp_path / "state" / STATUS_FILE).read_text())
    assert status["queues"]["broken"]["paused"] is True

    # `pilotwms factory resume broken` (the daemon holds the lock: a control request).
    result = CliRunner().invoke(
        _cli(),
        ["factory", "resume", "broken", "--config", _write(tmp_path, config), "--timeout", "0.5"],
    )
    assert result.exit_code == 0, result.output  # nobody holds the lock: done directly
    assert "resumed" in result.output
    resumed = Factory(config, server)
    assert not resumed.queues["broken"].limiter.paused
    resumed.cycle()
    assert len(resumed.state.pilots) > before


def test_cancel_pilots_request_cancels_and_the_policy_decides_again(
    tmp_path: Path, stub: Path, cleanup: None
) -> None:
    config = _config(tmp_path, stub, work={"sched_max": 2})
    server = FakeServer([TaskQueueSnapshot("tq1", waiting=4, cores=1, ad=ANY)])
    factory = Factory(config, server)
    factory.cycle()
    first = set(_live(factory, "work"))
    _register_running(factory, server)
    control = tmp_path / "state" / "control"
    control.mkdir(parents=True)
    (control / "request-1.json").write_text('{"action": "cancel-pilots", "queue": "work"}')
    factory.cycle()
    answer = json.loads((control / "answer-1.json").read_text())
    assert answer["ok"] and sorted(answer["cancelled"]["work"]) == sorted(first)
    assert all(r.cancelled for r in factory.state.pilots.values() if r.batch_id in first)
    # The demand is still there: once the cancelled pilots are gone, new ones replace them,
    # and the cancellations do not count as pilots dying at start.
    wait_for(
        lambda: factory.cycle() and len(set(_live(factory, "work")) - first) == 2,
        what="replacement pilots",
    )
    assert factory.queues["work"].limiter.start_failures == 0
    assert any(c.state == "cancelled" for _, c in server.states)


def test_a_control_request_that_is_not_an_object_is_answered_not_retried(
    tmp_path: Path, stub: Path
) -> None:
    factory = Factory(_config(tmp_path, stub, work={}), FakeServer())
    control = tmp_path / "state" / "control"
    control.mkdir(parents=True)
    (control / "request-1.json").write_text('["resume", "work"]')
    factory.handle_control_requests()
    answer = json.loads((control / "answer-1.json").read_text())
    assert not answer["ok"] and "not a JSON object" in answer["message"]
    assert not (control / "request-1.json").exists()


def test_status_says_when_the_daemon_is_not_running(tmp_path: Path, stub: Path) -> None:
    config = _config(tmp_path, stub, work={})
    path = _write(tmp_path, config)
    result = CliRunner().invoke(_cli(), ["factory", "status", "--config", path])
    assert result.exit_code == 1
    assert "NOT running" in result.output and "no status yet" in result.output
    Factory(config, FakeServer()).write_status(stopped=True)
    result = CliRunner().invoke(_cli(), ["factory", "status", "--config", path])
    assert "NOT running" in result.output and "queue work (local" in result.output


def _cli() -> Any:
    from pilotwms.cli.main import app

    return app


def _write(tmp_path: Path, config: FactoryConfig) -> str:
    """The configuration as a TOML file, for the command line."""
    settings = config.settings
    lines = [
        "[factory]",
        f'server_url = "{settings.server_url}"',
        f'state_dir = "{settings.state_dir}"',
    ]
    for q in config.queues:
        lines += [
            f"[queues.{q.name}]",
            f'backend = "{q.backend}"',
            f"poll = {q.poll}",
            f"wait_term = {q.wait_term}",
            f"sched_max = {q.sched_max}",
        ]
    path = tmp_path / "factory.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)
