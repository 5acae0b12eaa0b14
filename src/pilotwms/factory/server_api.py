"""The factory's side of the server's admin API: demand, pilot records, tokens, logs, queues.

The factory is an operator's daemon, not a user: it speaks to the admin routes with an admin
token and does not go through ``pilotwms.client`` (the user-facing Python API, whose errors
describe job submission). Failures are mapped onto the one error hierarchy
(``pilotwms.core.errors``): an unreachable server or a 5xx is ``ServiceUnavailable`` (the daemon
records it and tries again next cycle), 401 ``Unauthenticated``, 403 ``Forbidden``, 404
``NotFound`` (an older server without the factory routes), anything else ``ServerApiError`` with
the server's problem text.

``ServerApi`` is a class with plain methods so that the daemon's tests can replace it with an
in-memory fake of the same shape (``FactoryServer`` is the protocol both satisfy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from pilotwms.core.errors import (
    Forbidden,
    NotFound,
    PilotWMSError,
    ServiceUnavailable,
    Unauthenticated,
)
from pilotwms.factory.demand import TaskQueueSnapshot
from pilotwms.factory.pilots import AgentReport, AgentState

__all__ = [
    "AGENT_VERSION_HEADER",
    "BatchStateChange",
    "DemandSnapshot",
    "FactoryServer",
    "PilotToken",
    "RegisteredPilot",
    "ServerApi",
    "ServerApiError",
]

#: The header of ``GET /api/v1/pilot/agent.pyz`` carrying the zipapp's version.
AGENT_VERSION_HEADER = "X-Pilotwms-Agent-Version"
#: What is uploaded of a pilot's log file: its last MiB.
LOG_TAIL_BYTES = 1 << 20


class ServerApiError(PilotWMSError):
    """The server answered the factory with an error it cannot act on."""

    title = "Server refused a factory request"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = status

    def extra(self) -> dict[str, Any]:
        return {"http_status": self.http_status}


@dataclass(frozen=True)
class RegisteredPilot:
    """The server's view of one registered pilot, from ``GET /api/v1/admin/demand``."""

    pilot_id: str
    queue: str
    batch_id: str
    report: AgentReport
    version: str = ""


@dataclass(frozen=True)
class DemandSnapshot:
    """One read of the server's demand: waiting task queues, pilots, the current agent."""

    agent_version: str
    task_queues: tuple[TaskQueueSnapshot, ...] = ()
    pilots: tuple[RegisteredPilot, ...] = ()

    def reports(self, queue: str) -> dict[str, AgentReport]:
        """Agent reports of ``queue``'s pilots by batch id (the ``DemandSource`` view)."""
        return {p.batch_id: p.report for p in self.pilots if p.queue == queue and p.batch_id}


@dataclass(frozen=True)
class BatchStateChange:
    """A pilot whose batch state changed since the server was last told."""

    batch_id: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class PilotToken:
    token: str
    token_id: str
    #: seconds since the epoch
    expires_at: float


class FactoryServer(Protocol):
    """Everything the daemon asks of the server (``ServerApi`` or a test's fake)."""

    def demand(self) -> DemandSnapshot: ...

    def record_pilots(
        self,
        queue: str,
        backend: str,
        batch_ids: Sequence[str],
        factory: str,
        log_paths: Mapping[str, Mapping[str, str]],
    ) -> dict[str, str]: ...

    def batch_states(self, queue: str, changes: Sequence[BatchStateChange]) -> int: ...

    def pilot_token(self, lifetime_s: float, description: str) -> PilotToken: ...

    def upload_log(self, pilot_id: str, stream: str, text: str, total_bytes: int) -> None: ...

    def publish_queue(self, name: str, ad: Mapping[str, Any]) -> None: ...

    def fetch_agent(self, dest_dir: Path) -> tuple[str, Path]: ...


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return str(body)[:300]


def _expires(value: object) -> float:
    """``expires_at`` as epoch seconds: the server sends ISO 8601 (or a number)."""
    from datetime import datetime

    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.replace("Z", "+00:00")
        return datetime.fromisoformat(text).timestamp()
    raise ServerApiError(f"the pilot token has no readable expires_at: {value!r}")


class ServerApi:
    """HTTP calls to the admin routes the factory needs, with an admin token."""

    def __init__(
        self,
        server_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.server_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "pilotwms-factory"},
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    @property
    def agent_url(self) -> str:
        """Where pilots fetch the agent zipapp (with their pilot token)."""
        return f"{self.server_url}/api/v1/pilot/agent.pyz"

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        what = f"{method} {path}"
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"the server {self.server_url} cannot be reached ({what}): {exc}; "
                "check [factory] server_url and that the server runs"
            ) from exc
        if response.is_success:
            return response
        text = _problem_text(response)
        code = response.status_code
        if code == 401:
            raise Unauthenticated(
                f"the server rejected the factory's token ({what}): {text}; "
                "create an admin token with 'pilotwms admin token create --role admin'"
            )
        if code == 403:
            raise Forbidden(f"the factory's token may not {what}: {text}; it needs the admin role")
        if code == 404:
            raise NotFound(f"{what}: {text}")
        if code in (502, 503, 504):
            raise ServiceUnavailable(f"the server is unavailable ({what}): {text}")
        raise ServerApiError(f"{what} answered {code}: {text}", code)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise ServerApiError(
                f"{response.request.url.path} did not answer JSON: {response.text[:200]!r}"
            ) from exc
        if not isinstance(body, dict):
            raise ServerApiError(f"{response.request.url.path} answered {body!r}")
        return body

    def demand(self) -> DemandSnapshot:
        body = self._json(self._call("GET", "/api/v1/admin/demand"))
        try:
            tqs = tuple(
                TaskQueueSnapshot(
                    tq_id=str(t["tq_id"]),
                    waiting=int(t["waiting"]),
                    cores=int(t.get("cores") or 1),
                    ad=str(t["ad"]),
                )
                for t in body.get("task_queues", [])
            )
            pilots = tuple(
                RegisteredPilot(
                    pilot_id=str(p["id"]),
                    queue=str(p.get("queue") or ""),
                    batch_id=str(p.get("batch_id") or ""),
                    report=AgentReport(
                        AgentState(p["state"]),
                        int(p["free_cores"]) if p.get("free_cores") is not None else None,
                    ),
                    version=str(p.get("version") or ""),
                )
                for p in body.get("pilots", [])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerApiError(f"GET /api/v1/admin/demand: unexpected answer ({exc})") from exc
        return DemandSnapshot(str(body.get("agent_version") or ""), tqs, pilots)

    def record_pilots(
        self,
        queue: str,
        backend: str,
        batch_ids: Sequence[str],
        factory: str,
        log_paths: Mapping[str, Mapping[str, str]],
    ) -> dict[str, str]:
        """Record submitted pilots; returns the server's pilot id by batch id."""
        body = {
            "queue": queue,
            "backend": backend,
            "batch_ids": list(batch_ids),
            "factory": factory,
            "log_paths": {k: dict(v) for k, v in log_paths.items()},
        }
        answer = self._json(self._call("POST", "/api/v1/admin/pilots", json=body))
        return {str(p["batch_id"]): str(p["id"]) for p in answer.get("pilots", [])}

    def batch_states(self, queue: str, changes: Sequence[BatchStateChange]) -> int:
        if not changes:
            return 0
        body = {
            "queue": queue,
            "pilots": [
                {"batch_id": c.batch_id, "state": c.state, "reason": c.reason} for c in changes
            ],
        }
        answer = self._json(self._call("POST", "/api/v1/admin/pilots/batch-states", json=body))
        return int(answer.get("updated", 0))

    def pilot_token(self, lifetime_s: float, description: str) -> PilotToken:
        body = {"lifetime_s": lifetime_s, "description": description}
        answer = self._json(self._call("POST", "/api/v1/admin/pilot-tokens", json=body))
        return PilotToken(
            str(answer["token"]), str(answer.get("token_id", "")), _expires(answer["expires_at"])
        )

    def upload_log(self, pilot_id: str, stream: str, text: str, total_bytes: int) -> None:
        """Store the tail ``text`` of a log file of ``total_bytes`` bytes."""
        self._call(
            "PUT",
            f"/api/v1/admin/pilots/{pilot_id}/log",
            params={"stream": stream, "total_bytes": total_bytes},
            content=text.encode("utf-8", errors="replace"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )

    def publish_queue(self, name: str, ad: Mapping[str, Any]) -> None:
        self._call("PUT", f"/api/v1/admin/queues/{name}", json={"ad": dict(ad)})

    def fetch_agent(self, dest_dir: Path) -> tuple[str, Path]:
        """Download the server's agent zipapp into ``dest_dir/agent-<version>.pyz``."""
        response = self._call("GET", "/api/v1/pilot/agent.pyz")
        version = response.headers.get(AGENT_VERSION_HEADER, "").strip() or "unknown"
        safe = "".join(ch if ch.isalnum() or ch in "._+-" else "_" for ch in version)
        dest_dir.mkdir(parents=True, exist_ok=True)
        path = dest_dir / f"agent-{safe}.pyz"
        tmp = dest_dir / f".agent-{safe}.{os.getpid()}.tmp"
        tmp.write_bytes(response.content)
        os.replace(tmp, path)
        return version, path


def read_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``path`` as text ("" when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")
