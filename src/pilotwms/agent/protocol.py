"""The pilot routes of ``docs/pilot-protocol.md``, one method each, on top of the transport.

This is the only module that knows URLs and JSON field names of the protocol; the runner works
with its return values. Every method makes a single try unless it says otherwise: the runner owns
the back-off schedule for the main loop so it can keep heartbeating and watching its jobs while
the server is away. Blob downloads and output uploads, which run in job threads, retry here.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional

from .transport import ServerRejected, Transport

API = "/api/v1"


class ProtocolError(ServerRejected):
    """The server answered 2xx with a body that does not follow the protocol."""


def _object(value: Any, what: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(200, f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


class PilotClient:
    """Client side of the pilot protocol for one pilot."""

    def __init__(self, transport: Transport, transfer_attempts: int = 5):
        self.transport = transport
        self.transfer_attempts = transfer_attempts
        self.pilot_id: Optional[str] = None

    def _pilot_path(self, suffix: str = "") -> str:
        if self.pilot_id is None:
            raise RuntimeError("the pilot is not registered")
        return f"{API}/pilot/{urllib.parse.quote(self.pilot_id, safe='')}{suffix}"

    def register(
        self, ad: Dict[str, Any], agent_version: str, queue: str, batch_id: str
    ) -> Dict[str, Any]:
        """``POST /pilot/register``; remembers and returns the reply (with ``pilot_id``)."""
        reply = self.transport.request(
            "POST",
            f"{API}/pilot/register",
            json_body={
                "ad": ad,
                "agent_version": agent_version,
                "queue": queue,
                "batch_id": batch_id,
            },
        ).json()
        reply = _object(reply, "register")
        if not isinstance(reply.get("pilot_id"), (str, int)):
            raise ProtocolError(200, "register: reply has no pilot_id")
        self.pilot_id = str(reply["pilot_id"])
        return reply

    def request_work(
        self,
        *,
        free_cores: int,
        free_memory_mb: int,
        time_left_s: Optional[float],
        max_jobs: int,
        wait_s: float,
        ad_update: Dict[str, Any],
        prefetch: int = 0,
    ) -> List[Any]:
        """``POST /pilot/{id}/work`` (long poll); returns the raw job specs, possibly none.
        ``prefetch``: jobs to queue beyond the free slots (sent only when asked for, so a
        request without it is the protocol's original shape)."""
        body = {
            "free_cores": free_cores,
            "free_memory_mb": free_memory_mb,
            "time_left_s": None if time_left_s is None else int(time_left_s),
            "max_jobs": max_jobs,
            "wait_s": wait_s,
            "ad_update": ad_update,
        }
        if prefetch > 0:
            body["prefetch"] = prefetch
        reply = self.transport.request(
            "POST",
            self._pilot_path("/work"),
            json_body=body,
            timeout=self.transport.timeout + wait_s,
        ).json()
        jobs = _object(reply, "work").get("jobs") or []
        if not isinstance(jobs, list):
            raise ProtocolError(200, "work: jobs must be a list")
        return jobs

    def heartbeat(self, state: str, jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """``POST /pilot/{id}/heartbeat``; returns the commands of the reply."""
        reply = self.transport.request(
            "POST", self._pilot_path("/heartbeat"), json_body={"state": state, "jobs": jobs}
        ).json()
        commands = _object(reply, "heartbeat").get("commands") or []
        if not isinstance(commands, list):
            raise ProtocolError(200, "heartbeat: commands must be a list")
        return [c for c in commands if isinstance(c, dict)]

    def send_reports(self, reports: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """``POST /pilot/{id}/reports``; returns ``results`` (one outcome per report id)."""
        reply = self.transport.request(
            "POST", self._pilot_path("/reports"), json_body={"reports": reports}
        ).json()
        results = _object(reply, "reports").get("results") or []
        if not isinstance(results, list):
            raise ProtocolError(200, "reports: results must be a list")
        return results

    def upload_output(self, job_id: str, attempt: int, name: str, source: Path) -> None:
        """``PUT /pilot/{id}/jobs/{job}/attempts/{n}/output?name=REL`` with the file as body."""
        path = self._pilot_path(
            f"/jobs/{urllib.parse.quote(job_id, safe='')}/attempts/{attempt}/output"
        )
        self.transport.request(
            "PUT",
            path,
            body_file=source,
            params={"name": name},
            attempts=self.transfer_attempts,
            timeout=max(self.transport.timeout, 300),
        )

    def fetch_blob(self, digest: str, dest: Path) -> str:
        """``GET /sandboxes/{digest}`` into ``dest``; returns the sha256 of what arrived."""
        return self.transport.download(
            f"{API}/sandboxes/{digest}", dest, attempts=self.transfer_attempts
        )

    def deregister(self, reason: str) -> None:
        """``DELETE /pilot/{id}`` with the reason; the pilot id is forgotten."""
        self.transport.request("DELETE", self._pilot_path(), json_body={"reason": reason})
        self.pilot_id = None
