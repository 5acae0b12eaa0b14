"""Submission throughput of the WMS server.

Two cases, against a real server over HTTP (started here on SQLite in a temporary directory,
or an existing one with --url/--token):

1. a 10,000-job parametric JDL in one request: time until the 201 answer (the transaction is
   committed before the answer), jobs/s, and the ratio to the 0.5 s target;
2. a bulk request of 1,000 JDLs: time until persisted and jobs/s.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TARGET_S = 0.5

PARAMETRIC = """[
  JobType = "Parametric";
  Executable = "/bin/echo";
  Arguments = "value _PARAM_";
  StdOutput = "out_PARAM_.txt";
  StdError = "err.txt";
  OutputSandbox = {"out_PARAM_.txt", "err.txt"};
  InputSandbox = {"common.sh"};
  Parameters = %d;
  ParameterStart = 0;
  ParameterStep = 1;
]"""

BULK_ITEM = (
    'Executable = "/bin/echo"; Arguments = "job %d"; StdOutput = "out.txt"; '
    'OutputSandbox = {"out.txt"};'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_local_server(
    workdir: Path, database_url: str | None
) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {**os.environ, "PILOTWMS_DATA_DIR": str(workdir)}
    env.pop("PILOTWMS_DATABASE_URL", None)
    if database_url:
        env["PILOTWMS_DATABASE_URL"] = database_url
    cli = [sys.executable, "-m", "pilotwms.cli.main"]
    subprocess.run(
        [*cli, "admin", "user", "add", "bench"], env=env, check=True, capture_output=True
    )
    made = subprocess.run(
        [*cli, "admin", "token", "create", "bench", "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    token = json.loads(made.stdout)["token"]
    port = free_port()
    proc = subprocess.Popen(
        [*cli, "server", "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health").status_code == 200:
                return proc, url, token
        except httpx.TransportError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("the server did not start")


def bench_parametric(client: httpx.Client, nodes: int, digest: str) -> float:
    body = {"jdl": PARAMETRIC % nodes, "sandbox": {"common.sh": digest}}
    start = time.perf_counter()
    r = client.post("/api/v1/jobs", json=body)
    elapsed = time.perf_counter() - start
    r.raise_for_status()
    job = r.json()
    assert len(job["nodes"]) == nodes
    status = client.get(f"/api/v1/jobs/{job['id']}", params={"nodes": "false"}).json()
    assert status["children"]["total"] == nodes
    return elapsed


def bench_bulk(client: httpx.Client, count: int) -> float:
    body = {"jobs": [{"jdl": BULK_ITEM % i} for i in range(count)]}
    start = time.perf_counter()
    r = client.post("/api/v1/jobs/bulk", json=body)
    elapsed = time.perf_counter() - start
    r.raise_for_status()
    assert len(r.json()["jobs"]) == count
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="existing server (default: start one on SQLite)")
    parser.add_argument("--token", help="user token for --url")
    parser.add_argument(
        "--database-url",
        help="database of the local server (default: SQLite in a temporary directory); "
        "an empty PostgreSQL database, e.g. postgresql+psycopg://u:pw@127.0.0.1/bench",
    )
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--bulk", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    proc = None
    with tempfile.TemporaryDirectory(prefix="pilotwms-bench-") as tmp:
        if args.url:
            url, token = args.url, args.token
        else:
            proc, url, token = start_local_server(Path(tmp), args.database_url)
        try:
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300
            ) as client:
                digest = client.post("/api/v1/sandboxes", content=b"#!/bin/sh\necho\n").json()[
                    "digest"
                ]
                bench_parametric(client, 100, digest)  # warm-up: imports, caches, pools
                bench_bulk(client, 10)
                para = [bench_parametric(client, args.nodes, digest) for _ in range(args.repeat)]
                bulk = [bench_bulk(client, args.bulk) for _ in range(args.repeat)]
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    where = args.url or (
        "local server, PostgreSQL" if args.database_url else "local server, SQLite (WAL)"
    )
    print(f"submission benchmark against {where}, {args.repeat} runs each")
    best, median = min(para), statistics.median(para)
    print(
        f"parametric {args.nodes} jobs: best {best:.3f} s, median {median:.3f} s until persisted; "
        f"{args.nodes / median:,.0f} jobs/s (median); "
        f"ratio to the {TARGET_S} s target: {median / TARGET_S:.2f} (best {best / TARGET_S:.2f})"
    )
    best, median = min(bulk), statistics.median(bulk)
    print(
        f"bulk {args.bulk} JDLs: best {best:.3f} s, median {median:.3f} s until persisted; "
        f"{args.bulk / median:,.0f} jobs/s (median)"
    )


if __name__ == "__main__":
    main()
