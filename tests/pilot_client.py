"""A protocol-level pilot for tests: httpx calls of ``docs/pilot-protocol.md``, no agent.

The server tests use it to drive the protocol step by step; the concurrency tests run many of
them at once. It is not the agent: nothing is executed, reports are made up by the test.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from wms_server import RunningServer

PRODUCTION_AD: dict[str, Any] = {
    "Cpus": 4,
    "Memory": 8000,
    "FreeCpus": 4,
    "RunningJobs": 0,
    "GlueCEInfoTotalCPUs": 4,
    "GlueCEStateFreeCPUs": 4,
    "GlueCEStateStatus": "Production",
    "GlueCEStateEstimatedResponseTime": 0,
    "GlueHostMainMemoryRAMSize": 8000,
    "TimeLeft": -1,
}


def new_tag() -> str:
    """A value for the ``TestTag`` attribute: jobs requiring it match only pilots carrying it,
    so tests sharing a server do not take each other's jobs."""
    return uuid.uuid4().hex[:12]


def tagged_jdl(tag: str, body: str = 'Executable = "/bin/true";') -> str:
    return f'{body} Requirements = other.TestTag == "{tag}";'


class ProtocolPilot:
    """One registered pilot speaking the protocol over httpx."""

    def __init__(
        self,
        server: RunningServer,
        token: str,
        *,
        tag: str,
        version: str | None = None,
        queue: str = "q",
        batch_id: str = "b1",
        **ad: Any,
    ) -> None:
        from pilotwms.agent import AGENT_VERSION

        self.client = server.client(token)
        self.tag = tag
        self.ad = {**PRODUCTION_AD, "TestTag": tag, **ad}
        # The server drains pilots of another agent version than the one it serves.
        self.version = version or AGENT_VERSION
        reply = self.client.post(
            "/api/v1/pilot/register",
            json={
                "ad": self.ad,
                "agent_version": self.version,
                "queue": queue,
                "batch_id": batch_id,
            },
        )
        assert reply.status_code == 200, reply.text
        self.registration = reply.json()
        self.pilot_id = str(self.registration["pilot_id"])

    def path(self, suffix: str = "") -> str:
        return f"/api/v1/pilot/{self.pilot_id}{suffix}"

    def work(
        self, *, max_jobs: int = 1, wait_s: float = 0.0, free_cores: int = 4, prefetch: int = 0
    ) -> list[dict]:
        reply = self.client.post(
            self.path("/work"),
            json={
                "free_cores": free_cores,
                "free_memory_mb": 8000,
                "time_left_s": None,
                "max_jobs": max_jobs,
                "wait_s": wait_s,
                "ad_update": {},
                "prefetch": prefetch,
            },
            timeout=wait_s + 60,
        )
        assert reply.status_code == 200, reply.text
        jobs: list[dict] = reply.json()["jobs"]
        return jobs

    def heartbeat(self, jobs: list[dict] | None = None, state: str = "running") -> list[dict]:
        listed = [
            {"job_id": j["job_id"], "attempt": j["attempt"], "cpu_s": 1.0, "rss_mb": 10.0}
            for j in jobs or []
        ]
        reply = self.client.post(self.path("/heartbeat"), json={"state": state, "jobs": listed})
        assert reply.status_code == 200, reply.text
        commands: list[dict] = reply.json()["commands"]
        return commands

    def report(self, spec: dict, kind: str, report_id: str | None = None, **fields: Any) -> dict:
        body = {
            "report_id": report_id or secrets.token_hex(16),
            "job_id": spec["job_id"],
            "attempt": spec["attempt"],
            "type": kind,
            "time": time.time(),
            **fields,
        }
        return self.reports([body])[0]

    def reports(self, reports: list[dict]) -> list[dict]:
        reply = self.client.post(self.path("/reports"), json={"reports": reports})
        assert reply.status_code == 200, reply.text
        results: list[dict] = reply.json()["results"]
        return results

    def finish(self, spec: dict, status: str = "done", exit_code: int | None = 0) -> dict:
        self.report(spec, "started")
        self.report(spec, "payload_started")
        return self.report(
            spec,
            "finished",
            status=status,
            reason="",
            exit_code=exit_code,
            signal=None,
            cpu_s=0.1,
            max_rss_mb=1.0,
            wall_s=0.1,
            payload_started=True,
            missing_outputs=[],
            stdout_tail="",
        )


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:g} s waiting for {what or condition} ({last!r})"
    )


def job_state(client: httpx.Client, job_id: int | str) -> dict:
    reply = client.get(f"/api/v1/jobs/{job_id}")
    assert reply.status_code == 200, reply.text
    status: dict = reply.json()
    return status
