"""A small in-process server speaking the pilot protocol of docs/pilot-protocol.md.

It implements exactly what the agent needs (and checks the token), so the agent's side of the
protocol is exercised over real HTTP on a loopback port; the real server is tested against the
same document in its own suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import threading
import time
import urllib.parse
from typing import Any


class FakeWMS:
    """State of the fake server; tests read and change it directly (under ``lock``)."""

    def __init__(self, token: str = "pilot-token"):
        self.token = token
        self.lock = threading.Condition()
        self.pilots: dict[str, dict[str, Any]] = {}
        self.jobs: list[dict[str, Any]] = []
        self.reports: dict[str, dict[str, Any]] = {}
        self.report_posts = 0
        self.outputs: dict[tuple[str, int, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.commands: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.work_requests: list[dict[str, Any]] = []
        self.stale: set[tuple[str, int]] = set()
        self.unavailable = False
        self.requests: list[tuple[str, str]] = []
        self.deregistered: dict[str, str] = {}
        self.auth_headers: list[str | None] = []
        self.settings = {"heartbeat_interval_s": 0.3, "lease_timeout_s": 5, "poll_wait_s": 0.3}
        self._server: http.server.ThreadingHTTPServer | None = None
        #: Open client connections (the agent keeps them alive), closed by :meth:`stop`.
        self.connections: set[socket.socket] = set()
        self.connections_opened = 0
        self._next_pilot = 0

    # -- lifecycle of the HTTP server --------------------------------------------------------

    def start(self, port: int = 0) -> str:
        handler = _make_handler(self)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def stop(self) -> None:
        """Stop listening and drop the open connections, as a server that goes away does."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            connections, self.connections = set(self.connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- helpers for tests --------------------------------------------------------------------

    def add_blob(self, content: bytes) -> str:
        digest = hashlib.sha256(content).hexdigest()
        self.blobs[digest] = content
        return digest

    def add_job(self, spec: dict[str, Any]) -> None:
        with self.lock:
            self.jobs.append(spec)
            self.lock.notify_all()

    def reports_of(self, job_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r
                for r in self.reports.values()
                if r.get("job_id") == job_id and (kind is None or r.get("type") == kind)
            ]

    # -- routes -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p][2:]  # drop api/v1
        if parts[:1] == ["sandboxes"] and method == "GET":
            blob = self.blobs.get(parts[1])
            return (200, blob) if blob is not None else (404, {"detail": "no such blob"})
        if parts[:1] != ["pilot"]:
            return 404, {"detail": "unknown route"}
        if parts[1:] == ["register"]:
            data = json.loads(body)
            with self.lock:
                self._next_pilot += 1
                pilot_id = f"p{self._next_pilot}"
                self.pilots[pilot_id] = data
            return 200, dict(self.settings, pilot_id=pilot_id)
        pilot_id = parts[1]
        if pilot_id not in self.pilots:
            return 404, {"detail": f"pilot {pilot_id} unknown"}
        rest = parts[2:]
        if method == "DELETE" and not rest:
            self.deregistered[pilot_id] = json.loads(body or b"{}").get("reason", "")
            return 200, {}
        if rest == ["work"]:
            return 200, self._work(json.loads(body))
        if rest == ["heartbeat"]:
            data = json.loads(body)
            with self.lock:
                self.heartbeats.append(data)
                commands, self.commands = self.commands, []
            return 200, {"commands": commands}
        if rest == ["reports"]:
            return 200, self._reports(json.loads(body)["reports"])
        if len(rest) == 5 and rest[0] == "jobs" and rest[2] == "attempts" and rest[4] == "output":
            job_id, attempt = rest[1], int(rest[3])
            if (job_id, attempt) in self.stale:
                return 409, {"detail": "stale attempt"}
            self.outputs[(job_id, attempt, query["name"])] = body
            return 200, {}
        return 404, {"detail": "unknown route"}

    def _work(self, request: dict[str, Any]) -> dict[str, Any]:
        self.work_requests.append(request)
        deadline = time.monotonic() + min(float(request.get("wait_s") or 0), 2.0)
        with self.lock:
            while not self.jobs and time.monotonic() < deadline:
                self.lock.wait(max(0.0, deadline - time.monotonic()))
            taken: list[dict[str, Any]] = []
            cores = request["free_cores"]
            while self.jobs and len(taken) < request["max_jobs"]:
                if self.jobs[0].get("cores", 1) > cores:
                    break
                cores -= self.jobs[0].get("cores", 1)
                taken.append(self.jobs.pop(0))
            # The queue a pilot asks for beyond its free slots (``prefetch``).
            for _ in range(int(request.get("prefetch") or 0)):
                if not self.jobs:
                    break
                taken.append(self.jobs.pop(0))
        return {"jobs": taken}

    def _reports(self, reports: list[dict[str, Any]]) -> dict[str, Any]:
        results = []
        with self.lock:
            self.report_posts += 1
            for report in reports:
                rid = report["report_id"]
                if (report["job_id"], report["attempt"]) in self.stale:
                    outcome = "stale"
                elif rid in self.reports:
                    outcome = "duplicate"
                else:
                    self.reports[rid] = report
                    outcome = "accepted"
                results.append({"report_id": rid, "outcome": outcome})
        return {"results": results}


def _make_handler(wms: FakeWMS) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def setup(self) -> None:
            super().setup()
            with wms.lock:
                wms.connections.add(self.connection)
                wms.connections_opened += 1

        def finish(self) -> None:
            with wms.lock:
                wms.connections.discard(self.connection)
            super().finish()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            wms.requests.append((self.command, url.path))
            wms.auth_headers.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != f"Bearer {wms.token}":
                status, payload = 401, {"detail": "bad token"}
            elif wms.unavailable:
                status, payload = 503, {"detail": "database unavailable"}
            else:
                status, payload = wms.handle(self.command, url.path, query, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
