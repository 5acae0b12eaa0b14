"""DAG throughput through a real server and a real pilot agent, and the cost of a dependency.

One run, one server on SQLite (its own process), one pilot agent with 2 slots:

(a) a 1,000-node parametric job of ``/bin/true`` (no edges): nodes/s from the submission to the
    last node DONE;
(b) a 1,000-node DAG of ``/bin/true`` in layers: 1 root fanning out to a layer of 50, then
    layers of 50 where every node waits for 3 nodes of the layer above (a rolling fan-in, so
    that each layer starts only as the one above ends), the last layer 49 wide: 21 layers,
    2,897 edges. Nodes/s from the submission to the last node DONE;
(c) the overhead per dependency edge, ``(t_dag - t_flat) / edges``, and the ratios of (b) to
    the target (200 nodes/s) and to HTCondor DAGMan's default submission rate (20 nodes/s,
    ``DAGMAN_MAX_SUBMITS_PER_INTERVAL`` 100 every ``DAGMAN_USER_LOG_SCAN_INTERVAL`` 5 s).

Each figure is the best of ``--rounds`` runs. The end is the compound job's ``finished_at``
(server clock, the commit of the last node's report); the start is taken before the
submission request (same host). Run with ``.venv/bin/python benchmarks/dag_bench.py``.
Prints, never asserts.
"""

from __future__ import annotations

import argparse
import itertools
import time
from datetime import datetime

import httpx

from throughput_bench import server_and_pilot

TARGET = 200.0
DAGMAN_DEFAULT = 20.0


def layered_dag(nodes: int, width: int, fan_in: int) -> tuple[str, int, int]:
    """JDL of a ``nodes``-node DAG of ``/bin/true``: a root, then layers of ``width`` nodes
    each waiting for ``fan_in`` nodes of the layer above (the first layer for the root).
    Returns the JDL, the number of edges and the number of layers."""
    names = ["root"]
    layers: list[list[str]] = [["root"]]
    while len(names) < nodes:
        size = min(width, nodes - len(names))
        layer = [f"n{len(layers)}_{i}" for i in range(size)]
        layers.append(layer)
        names += layer
    edges: list[tuple[str, str]] = []
    for above, layer in itertools.pairwise(layers):
        for i, child in enumerate(layer):
            parents = {above[(i + k) % len(above)] for k in range(min(fan_in, len(above)))}
            edges += [(p, child) for p in sorted(parents)]
    described = " ".join(f'{n} = [ description = [ Executable = "/bin/true"; ]; ];' for n in names)
    deps = ", ".join(f"{{{p}, {c}}}" for p, c in edges)
    jdl = f'[ Type = "dag"; nodes = [ {described} ]; dependencies = {{ {deps} }}; ]'
    return jdl, len(edges), len(layers)


def parametric(nodes: int) -> str:
    return f'[ JobType = "Parametric"; Executable = "/bin/true"; Parameters = {nodes}; ]'


def run_once(client: httpx.Client, jdl: str, *, timeout: float = 600.0) -> tuple[float, float]:
    """Seconds from just before the submission to the last node DONE (server clock), and to
    the submission's answer (parsing, validating, expanding and storing the JDL)."""
    start = time.time()
    reply = client.post("/api/v1/jobs", json={"jdl": jdl})
    reply.raise_for_status()
    accepted = time.time() - start
    job_id = reply.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/jobs/{job_id}", params={"nodes": "false"}).json()
        if status["state"] in ("DONE", "ABORTED", "CANCELLED"):
            if status["state"] != "DONE" or status["done_code"] != "ok":
                raise SystemExit(f"job {job_id} ended {status['state']} {status['done_code']}")
            end = datetime.fromisoformat(status["finished_at"]).timestamp()
            return end - start, accepted
        time.sleep(0.1)
    raise SystemExit(f"job {job_id} did not finish within {timeout:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--width", type=int, default=50, help="nodes per layer")
    parser.add_argument("--fan-in", type=int, default=3, help="parents per node")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()

    dag, edges, layers = layered_dag(args.nodes, args.width, args.fan_in)
    flat = parametric(args.nodes)
    with server_and_pilot("pilotwms-dag-") as client:
        run_once(client, layered_dag(20, 5, 2)[0])  # warm-up: pilot registered
        t_flat, s_flat = min(run_once(client, flat) for _ in range(args.rounds))
        t_dag, s_dag = min(run_once(client, dag) for _ in range(args.rounds))
    flat_rate = args.nodes / t_flat
    dag_rate = args.nodes / t_dag
    per_edge_ms = (t_dag - t_flat) / edges * 1000 if edges else 0.0
    print(
        f"(a) {args.nodes}-node parametric job of /bin/true, 1 pilot with 2 slots, SQLite: "
        f"{t_flat:.2f} s (submission answered in {s_flat:.2f} s), {flat_rate:,.0f} nodes/s"
    )
    print(
        f"(b) {args.nodes}-node layered DAG ({layers} layers: 1 root, then {args.width} wide, "
        f"{args.fan_in} parents each; {edges:,} edges): {t_dag:.2f} s (submission answered "
        f"in {s_dag:.2f} s), {dag_rate:,.0f} nodes/s"
    )
    print(
        f"(c) overhead per dependency edge: {per_edge_ms:.3f} ms; "
        f"DAG/target = {dag_rate / TARGET:.2f} (target {TARGET:.0f} nodes/s); "
        f"DAG/DAGMan default = {dag_rate / DAGMAN_DEFAULT:.1f}x "
        f"({DAGMAN_DEFAULT:.0f} nodes/s); DAG/flat = {dag_rate / flat_rate:.2f}"
    )


if __name__ == "__main__":
    main()
