"""Job throughput and start latency through a real server and a real pilot agent.

Three figures, one run:

(a) the floor: 2,000 ``/bin/true`` processes spawned by a pool of 2 threads, jobs/s;
(b) 2,000 JDL jobs running ``/bin/true``, submitted as one parametric job and run by one pilot
    agent with 2 slots through a real server on SQLite (its own process), from the submission
    to the last node DONE: jobs/s and the ratio to (a) (target: at least 0.5);
(c) submit-to-start latency of single jobs on an idle warm pilot over 200 jobs: p50 and p95
    from the submission to the hand-out (``Match`` event) and to the start (``Running``
    event, once the agent's ``started`` report is in), server clock (target p50 <= 20 ms).

The match time with 100,000 waiting jobs in 1,000 task queues is ``benchmarks/match_bench.py``.
Run with ``.venv/bin/python benchmarks/throughput_bench.py``. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "pilotwms.cli.main"]
LATENCY_TARGET_MS = 20.0


def floor(count: int) -> float:
    """(a) jobs/s of ``count`` plain ``/bin/true`` spawns on 2 threads."""

    def spawn(_: int) -> int:
        return subprocess.run(["/bin/true"], check=False).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(spawn, range(count)))
    elapsed = time.perf_counter() - start
    assert not any(codes)
    return count / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """A server on SQLite in ``workdir`` (its own process); returns it, its URL, a user token
    and a pilot token."""
    env = {**os.environ, "PILOTWMS_DATA_DIR": str(workdir)}
    for name in ("PILOTWMS_DATABASE_URL",):
        env.pop(name, None)

    def token(user: str, role: str) -> str:
        made = subprocess.run(
            [*CLI, "admin", "token", "create", user, "--role", role, "--json"],
            env=env,
            check=True,
            capture_output=True,
        )
        return str(json.loads(made.stdout)["token"])

    for user in ("bench", "factory"):
        subprocess.run(
            [*CLI, "admin", "user", "add", user], env=env, check=True, capture_output=True
        )
    user_token, pilot_token = token("bench", "user"), token("factory", "pilot")
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "server", "--port", str(port), "--log-level", "warning"], env=env
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health").status_code == 200:
                return proc, url, user_token, pilot_token
        except httpx.TransportError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("the server did not start")


def start_agent(url: str, token: str, workdir: Path, *, cores: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
    command = [
        sys.executable,
        "-m",
        "pilotwms.agent",
        "--server",
        url,
        "--token",
        token,
        "--work-dir",
        str(workdir),
        "--cores",
        str(cores),
        "--wait-term",
        "0",
        "--log-level",
        "WARNING",
    ]
    return subprocess.Popen(command, env=env)


@contextlib.contextmanager
def server_and_pilot(prefix: str, *, cores: int = 2) -> Iterator[httpx.Client]:
    """A server on SQLite and one pilot agent with ``cores`` slots, both in a temporary
    directory named ``prefix...``; yields a user's client of the server and stops both (and
    removes the directory) on leaving."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        server, url, user_token, pilot_token = start_server(workdir / "server")
        agent = start_agent(url, pilot_token, workdir / "pilot", cores=cores)
        try:
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {user_token}"}, timeout=120
            ) as client:
                yield client
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=60)
            except subprocess.TimeoutExpired:
                agent.kill()
            server.terminate()
            server.wait(timeout=60)


def wait_done(
    client: httpx.Client, job_id: int, *, timeout: float = 600.0, interval: float = 0.01
) -> dict:
    """Poll the job until it finished. The status of a 2,000-node job costs the server some
    milliseconds: (b) polls it rarely, so that the measurement does not load the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict = client.get(f"/api/v1/jobs/{job_id}", params={"nodes": "false"}).json()
        if status["state"] in ("DONE", "ABORTED", "CANCELLED"):
            return status
        time.sleep(interval)
    raise SystemExit(f"job {job_id} did not finish within {timeout:g} s")


def through_server(client: httpx.Client, count: int) -> float:
    """(b) jobs/s of a ``count``-node parametric job of ``/bin/true``, submission to last
    DONE: from the wall-clock time just before the submission to the time the server
    recorded the parametric job's end (``finished_at``, the same machine's clock), so the
    rare polling for the end adds nothing to the figure."""
    jdl = f'[ JobType = "Parametric"; Executable = "/bin/true"; Parameters = {count}; ]'
    submitted = time.time()
    reply = client.post("/api/v1/jobs", json={"jdl": jdl})
    reply.raise_for_status()
    status = wait_done(client, reply.json()["id"], interval=0.2)
    if not status.get("finished_at"):
        raise SystemExit("the finished parametric job has no finished_at")
    elapsed = _time(status["finished_at"]) - submitted
    if status["state"] != "DONE" or status["done_code"] != "ok":
        raise SystemExit(f"the parametric job ended {status['state']} {status['done_code']}")
    return count / elapsed


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def latencies(client: httpx.Client, count: int) -> tuple[list[float], list[float]]:
    """(c) seconds from submission to hand-out and to start, per single job, one at a time
    on an idle pilot."""
    matched: list[float] = []
    started: list[float] = []
    for _ in range(count):
        reply = client.post("/api/v1/jobs", json={"jdl": '[ Executable = "/bin/true"; ]'})
        reply.raise_for_status()
        job_id = reply.json()["id"]
        status = wait_done(client, job_id, timeout=60, interval=0.005)
        events = client.get(f"/api/v1/jobs/{job_id}/events").json()["events"]
        at = {e["event"]: _time(e["time"]) for e in events}
        submitted = _time(status["submitted_at"])
        matched.append(at["Match"] - submitted)
        started.append(at["Running"] - submitted)
    return matched, started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs for (a) and (b)")
    parser.add_argument("--latency-jobs", type=int, default=200, help="jobs for (c)")
    args = parser.parse_args()

    a = floor(args.jobs)
    print(f"(a) floor: {args.jobs} /bin/true on 2 threads: {a:,.0f} jobs/s")
    with server_and_pilot("pilotwms-throughput-") as client:
        through_server(client, 20)  # warm-up: the pilot registered, caches filled
        b = through_server(client, args.jobs)
        print(
            f"(b) {args.jobs} JDL jobs, 1 pilot with 2 slots, SQLite: {b:,.0f} jobs/s; "
            f"b/a = {b / a:.2f} (target >= 0.5)"
        )
        matched, started = latencies(client, args.latency_jobs)
        p50 = statistics.median(started) * 1000
        print(
            f"(c) submit-to-start latency over {len(started)} jobs on an idle pilot: "
            f"p50 {p50:.1f} ms, p95 {percentile(started, 0.95) * 1000:.1f} ms; "
            f"p50/target = {p50 / LATENCY_TARGET_MS:.2f} "
            f"(target p50 <= {LATENCY_TARGET_MS:g} ms); "
            f"submit-to-hand-out p50 {statistics.median(matched) * 1000:.1f} ms, "
            f"p95 {percentile(matched, 0.95) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
