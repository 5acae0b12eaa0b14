"""Shared helpers of the agent tests: a local blob store, an output sink, a job factory and
deadline-based waiting (never sleep-and-hope: the CI machine is small and noisy)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pilotwms.agent.executor import ExecutorContext, JobResult, JobRunner
from pilotwms.agent.jobspec import parse_job_spec
from pilotwms.agent.staging import BlobCache, LocalBlobDirectory


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class RecordingSink:
    """An output sink that keeps what the server would have received."""

    def __init__(self, fail: tuple[str, ...] = ()):
        self.files: dict[tuple[str, int, str], bytes] = {}
        self.fail = fail
        self.lock = threading.Lock()

    def upload_output(self, job_id: str, attempt: int, name: str, source: Path) -> None:
        if name in self.fail:
            raise OSError(f"refusing {name}")
        with self.lock:
            self.files[(job_id, attempt, name)] = source.read_bytes()


class CountingBlobs(LocalBlobDirectory):
    """A local blob directory that counts fetches, to prove the cache works."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.fetches: list[str] = []

    def fetch_blob(self, digest: str, dest: Path) -> str:
        self.fetches.append(digest)
        got: str = super().fetch_blob(digest, dest)
        return got


class JobKit:
    """Builds job specs and runs them through a real :class:`JobRunner`."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.blobs = CountingBlobs(tmp_path / "blobs")
        self.sink = RecordingSink()
        self.context = ExecutorContext(
            jobs_root=tmp_path / "jobs",
            cache=BlobCache(tmp_path / "cache", self.blobs),
            sink=self.sink,
            base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PILOTWMS_TOKEN": "secret"},
            cancel_grace=2.0,
        )
        self.context.jobs_root.mkdir()
        self.events: list[tuple[str, str]] = []
        self._serial = 0

    def spec(self, **fields: Any) -> Any:
        self._serial += 1
        raw: dict[str, Any] = {"job_id": f"job{self._serial}", "attempt": 1}
        raw.update(fields)
        return parse_job_spec(raw)

    def start(self, spec: Any, cores: int = 1) -> JobRunner:
        def on_event(kind: str, runner: JobRunner) -> None:
            self.events.append((kind, runner.spec.key))

        runner = JobRunner(spec, self.context, cores, on_event)
        runner.start()
        return runner

    def run(self, timeout: float = 30.0, **fields: Any) -> JobResult:
        runner = self.start(self.spec(**fields))
        assert runner.wait(timeout), "job did not finish in time"
        assert runner.result is not None
        return runner.result


@pytest.fixture
def kit(tmp_path: Path) -> JobKit:
    return JobKit(tmp_path)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def read_pids(path: Path) -> list[int] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    parts = text.split()
    return [int(p) for p in parts] if len(parts) >= 2 else None
