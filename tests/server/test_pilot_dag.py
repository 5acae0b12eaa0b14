"""DAG nodes through the pilot protocol: a child runs once every parent ended well, and the
descendants of a node that failed are aborted naming it."""

from __future__ import annotations

import httpx

from pilot_client import ProtocolPilot, job_state, new_tag
from wms_server import RunningServer


def dag(tag: str) -> str:
    req = f'other.TestTag == "{tag}"'
    return f"""[
  Type = "dag";
  nodes = [
    a = [ description = [ Executable = "/bin/true"; Requirements = {req}; ]; ];
    b = [ description = [ Executable = "/bin/true"; Requirements = {req}; ]; ];
    c = [ description = [ Executable = "/bin/true"; Requirements = {req}; ]; ];
    d = [ description = [ Executable = "/bin/true"; Requirements = {req}; ]; ];
  ];
  dependencies = {{ {{a, b}}, {{a, c}}, {{{{b, c}}, d}} }};
]"""


def submit_dag(client: httpx.Client, tag: str) -> tuple[int, dict[str, int]]:
    reply = client.post("/api/v1/jobs", json={"jdl": dag(tag)})
    assert reply.status_code == 201, reply.text
    body = reply.json()
    return body["id"], {n["name"]: n["id"] for n in body["nodes"]}


def test_children_run_when_every_parent_succeeded(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    top, nodes = submit_dag(alice, tag)
    pilot = ProtocolPilot(server, server.token(server.add_user(), "pilot"), tag=tag)
    (a,) = pilot.work(max_jobs=4)
    assert a["job_id"] == str(nodes["a"])
    pilot.finish(a)
    bc = pilot.work(max_jobs=4)
    assert sorted(s["job_id"] for s in bc) == sorted([str(nodes["b"]), str(nodes["c"])])
    pilot.finish(bc[0])
    assert pilot.work(max_jobs=4) == []  # d still waits for its other parent
    pilot.finish(bc[1])
    (d,) = pilot.work(max_jobs=4)
    assert d["job_id"] == str(nodes["d"])
    pilot.finish(d)
    assert job_state(alice, top)["state"] == "DONE"
    assert job_state(alice, top)["done_code"] == "ok"


def test_descendants_of_a_failed_node_are_aborted(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    top, nodes = submit_dag(alice, tag)
    pilot = ProtocolPilot(server, server.token(server.add_user(), "pilot"), tag=tag)
    (a,) = pilot.work(max_jobs=4)
    pilot.finish(a, status="failed", exit_code=2)
    for name in ("b", "c", "d"):
        node = job_state(alice, nodes[name])
        assert (node["state"], node["reason"]) == ("ABORTED", "parent a failed")
    assert pilot.work(max_jobs=4) == []
    assert job_state(alice, top)["state"] == "ABORTED"  # derived: a node aborted
