"""Submission of every kind of job through the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from pilotwms.server.db import dag_edges, job_inputs, jobs

SIMPLE = 'Executable = "/bin/echo"; Arguments = "hello";'


def test_normal_job_with_sandbox_files_is_stored_with_digests(server, alice: httpx.Client) -> None:
    jdl = 'Executable = "run.sh"; InputSandbox = {"run.sh", "data/in.txt", "https://h/x.dat"};'
    r = alice.post(
        "/api/v1/jobs",
        data={"jdl": jdl},
        files=[("run.sh", ("run.sh", b"#!/bin/sh\necho hi\n")), ("data/in.txt", ("in.txt", b"42"))],
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "job" and body["nodes"] == []
    with server.db.read() as conn:
        rows = {
            row.name: row
            for row in conn.execute(select(job_inputs).where(job_inputs.c.job_id == body["id"]))
        }
        job = conn.execute(select(jobs).where(jobs.c.id == body["id"])).one()
    assert rows["run.sh"].digest == hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()
    assert rows["in.txt"].digest == hashlib.sha256(b"42").hexdigest()
    assert rows["x.dat"].uri == "https://h/x.dat" and rows["x.dat"].digest is None
    assert job.state == "WAITING" and job.task_queue_id is not None
    assert job.retry_count == 3 and job.shallow_retry_count == 3
    blob = alice.get(f"/api/v1/sandboxes/{rows['in.txt'].digest}")
    assert blob.status_code == 200 and blob.content == b"42"


def test_sandbox_files_can_be_sent_under_the_sandbox_field(alice: httpx.Client) -> None:
    r = alice.post(
        "/api/v1/jobs",
        data={"jdl": 'Executable = "a.sh"; InputSandbox = {"a.sh"};'},
        files=[("sandbox", ("a.sh", b"echo"))],
    )
    assert r.status_code == 201, r.text


def test_missing_sandbox_files_are_all_named(alice: httpx.Client) -> None:
    jdl = 'Executable = "a.sh"; InputSandbox = {"a.sh", "b.txt", "c.txt"};'
    r = alice.post("/api/v1/jobs", data={"jdl": jdl}, files=[("b.txt", ("b.txt", b"b"))])
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    assert "a.sh" in detail and "c.txt" in detail and "b.txt" not in detail.split(";")[0]


def test_gsiftp_entries_are_rejected(alice: httpx.Client) -> None:
    jdl = 'Executable = "/bin/true"; InputSandbox = {"gsiftp://se.example.org/f"};'
    r = alice.post("/api/v1/jobs", json={"jdl": jdl})
    assert r.status_code == 400
    assert "gsiftp://se.example.org/f" in r.json()["detail"]


def test_bad_jdl_syntax_gives_line_and_column(alice: httpx.Client) -> None:
    r = alice.post("/api/v1/jobs", json={"jdl": 'Executable = "/bin/true";\nArguments = ;\n'})
    assert r.status_code == 400
    problem = r.json()
    assert problem["line"] == 2 and problem["column"] == 13
    assert problem["type"].endswith("jdl-syntax-error")
    assert "Arguments" in problem["source_line"]


def test_invalid_jdl_lists_every_problem(alice: httpx.Client) -> None:
    r = alice.post("/api/v1/jobs", json={"jdl": 'Arguments = 3; RetryCount = "x";'})
    assert r.status_code == 400
    problems = r.json()["problems"]
    assert len(problems) >= 2
    assert all({"attribute", "line", "column", "message"} <= set(p) for p in problems)


def test_parametric_job_creates_one_node_per_value(server, alice: httpx.Client) -> None:
    jdl = (
        'JobType = "Parametric"; Executable = "/bin/echo"; Arguments = "_PARAM_";'
        ' Parameters = 20; ParameterStep = 2; InputSandbox = {"common.txt"};'
    )
    r = alice.post("/api/v1/jobs", data={"jdl": jdl}, files=[("common.txt", ("c", b"shared"))])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "parametric"
    assert [n["name"] for n in body["nodes"]] == [f"Node_{i}" for i in range(0, 20, 2)]
    status = alice.get(f"/api/v1/jobs/{body['id']}").json()
    assert status["children"] == {"total": 10, "states": {"WAITING": 10}}
    assert status["state"] == "WAITING"
    node = body["nodes"][3]
    expanded = alice.get(f"/api/v1/jobs/{node['id']}/jdl").text
    assert '"6"' in expanded and "_PARAM_" not in expanded
    with server.db.read() as conn:
        digests = conn.execute(
            select(func.count(), func.count(func.distinct(job_inputs.c.digest))).where(
                job_inputs.c.job_id.in_([n["id"] for n in body["nodes"]])
            )
        ).one()
    assert tuple(digests) == (10, 1)


def test_parametric_with_param_in_sandbox_needs_each_file(alice: httpx.Client) -> None:
    jdl = (
        'JobType = "Parametric"; Executable = "/bin/cat"; Arguments = "in_PARAM_.txt";'
        ' Parameters = 3; InputSandbox = {"in_PARAM_.txt"};'
    )
    files = [(f"in{i}.txt", (f"in{i}.txt", f"{i}".encode())) for i in range(2)]
    r = alice.post("/api/v1/jobs", data={"jdl": jdl}, files=files)
    assert r.status_code == 400 and "in2.txt" in r.json()["detail"]
    files.append(("in2.txt", ("in2.txt", b"2")))
    assert alice.post("/api/v1/jobs", data={"jdl": jdl}, files=files).status_code == 201


COLLECTION = """[
  Type = "collection";
  InputSandbox = {"common1.txt", "common2.txt"};
  nodes = {
    [ NodeName = "n1"; Executable = "/bin/sh"; InputSandbox = {"s1.sh", root.InputSandbox[0]}; ],
    [ NodeName = "n2"; Executable = "/bin/sh"; InputSandbox = {root.InputSandbox}; ]
  };
]"""


def test_collection_nodes_share_the_parents_sandbox_blobs(server, alice: httpx.Client) -> None:
    files = [
        ("common1.txt", ("common1.txt", b"one")),
        ("common2.txt", ("common2.txt", b"two")),
        ("s1.sh", ("s1.sh", b"echo")),
    ]
    r = alice.post("/api/v1/jobs", data={"jdl": COLLECTION}, files=files)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "collection"
    assert [n["name"] for n in body["nodes"]] == ["n1", "n2"]
    with server.db.read() as conn:
        rows = conn.execute(
            select(job_inputs.c.job_id, job_inputs.c.name, job_inputs.c.digest).where(
                job_inputs.c.job_id.in_([n["id"] for n in body["nodes"]])
            )
        ).all()
    one = hashlib.sha256(b"one").hexdigest()
    assert {(r.name, r.digest) for r in rows if r.job_id == body["nodes"][0]["id"]} == {
        ("s1.sh", hashlib.sha256(b"echo").hexdigest()),
        ("common1.txt", one),
    }
    assert {r.name for r in rows if r.job_id == body["nodes"][1]["id"]} == {
        "common1.txt",
        "common2.txt",
    }


DAG = """[
  Type = "dag";
  max_nodes_running = 2;
  nodes = [
    a = [ description = [ Executable = "/bin/true"; ]; ];
    b = [ description = [ Executable = "/bin/true"; ]; ];
    c = [ description = [ Executable = "/bin/true"; ]; ];
    d = [ description = [ Executable = "/bin/true"; ]; ];
  ];
  dependencies = { {a, b}, {a, c}, {{b, c}, d} };
]"""


def test_dag_nodes_with_parents_wait_in_submitted(server, alice: httpx.Client) -> None:
    r = alice.post("/api/v1/jobs", json={"jdl": DAG})
    assert r.status_code == 201, r.text
    body = r.json()
    ids = {n["name"]: n["id"] for n in body["nodes"]}
    status = alice.get(f"/api/v1/jobs/{body['id']}").json()
    states = {n["name"]: n["state"] for n in status["nodes"]}
    assert states == {"a": "WAITING", "b": "SUBMITTED", "c": "SUBMITTED", "d": "SUBMITTED"}
    assert status["max_nodes_running"] == 2
    assert sorted(map(tuple, status["edges"])) == sorted(
        [(ids["a"], ids["b"]), (ids["a"], ids["c"]), (ids["b"], ids["d"]), (ids["c"], ids["d"])]
    )
    with server.db.read() as conn:
        count = conn.execute(
            select(func.count()).select_from(dag_edges).where(dag_edges.c.dag_id == body["id"])
        ).scalar_one()
    assert count == 4
    events = alice.get(f"/api/v1/jobs/{ids['b']}/events").json()["events"]
    assert [e["event"] for e in events] == ["RegJob"]


def test_cyclic_dag_is_rejected(alice: httpx.Client) -> None:
    jdl = DAG.replace("{{b, c}, d}", "{{b, c}, d}, {d, a}")
    r = alice.post("/api/v1/jobs", json={"jdl": jdl})
    assert r.status_code == 400
    assert "cycle" in r.json()["detail"].lower()


def test_bulk_submission_is_all_or_nothing(server, alice: httpx.Client) -> None:
    good = [{"jdl": f'Executable = "/bin/echo"; Arguments = "{i}";'} for i in range(30)]
    r = alice.post("/api/v1/jobs/bulk", json={"jobs": good})
    assert r.status_code == 201, r.text
    ids = [j["id"] for j in r.json()["jobs"]]
    assert len(set(ids)) == 30
    with server.db.read() as conn:
        before = conn.execute(select(func.count()).select_from(jobs)).scalar_one()
    bad = [*good[:5], {"jdl": "Executable = ;"}, *good[5:10]]
    r = alice.post("/api/v1/jobs/bulk", json={"jobs": bad})
    assert r.status_code == 400
    assert r.json()["filename"] == "jdl[5]"
    with server.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == before


def test_bulk_multipart_shares_files_between_jdls(alice: httpx.Client) -> None:
    jdl = 'Executable = "/bin/cat"; InputSandbox = {"shared.txt"};'
    r = alice.post(
        "/api/v1/jobs/bulk",
        data={"jdl": [jdl, jdl, SIMPLE]},
        files=[("shared.txt", ("shared.txt", b"s"))],
    )
    assert r.status_code == 201, r.text
    assert len(r.json()["jobs"]) == 3


def test_submission_by_digest_after_upload(alice: httpx.Client) -> None:
    content = b"uploaded before"
    up = alice.post("/api/v1/sandboxes", content=content)
    assert up.status_code == 201
    digest = up.json()["digest"]
    assert digest == hashlib.sha256(content).hexdigest()
    head = alice.head(f"/api/v1/sandboxes/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(content))
    jdl = 'Executable = "/bin/cat"; InputSandbox = {"in.txt"};'
    r = alice.post("/api/v1/jobs", json={"jdl": jdl, "sandbox": {"in.txt": digest}})
    assert r.status_code == 201, r.text
    unknown = "0" * 64
    r = alice.post("/api/v1/jobs", json={"jdl": jdl, "sandbox": {"in.txt": unknown}})
    assert r.status_code == 400 and unknown in r.json()["detail"]
    assert alice.head(f"/api/v1/sandboxes/{unknown}").status_code == 404
    assert alice.get("/api/v1/sandboxes/not-a-digest").status_code == 400


def test_upload_with_wrong_announced_digest_is_refused(alice: httpx.Client) -> None:
    r = alice.post("/api/v1/sandboxes", params={"digest": "1" * 64}, content=b"x")
    assert r.status_code == 400


def test_retry_counts_are_capped_like_glite(server, alice: httpx.Client) -> None:
    jdl = 'Executable = "/bin/true"; RetryCount = 50; ShallowRetryCount = -1;'
    job_id = alice.post("/api/v1/jobs", json={"jdl": jdl}).json()["id"]
    status = alice.get(f"/api/v1/jobs/{job_id}").json()
    # -1 is kept: shallow resubmission disabled, pre-payload failures count as deep ones
    assert (status["retry_count"], status["shallow_retry_count"]) == (10, -1)


def test_equal_jobs_share_a_task_queue(alice: httpx.Client) -> None:
    a = alice.post("/api/v1/jobs", json={"jdl": SIMPLE}).json()["id"]
    b = alice.post(
        "/api/v1/jobs", json={"jdl": 'Executable = "/bin/echo"; Arguments = "other";'}
    ).json()["id"]
    c = alice.post("/api/v1/jobs", json={"jdl": SIMPLE + " CpuNumber = 4;"}).json()["id"]
    tq = {j: alice.get(f"/api/v1/jobs/{j}").json()["task_queue_id"] for j in (a, b, c)}
    assert tq[a] == tq[b] != tq[c]


def test_jdl_forms(alice: httpx.Client) -> None:
    job_id = alice.post("/api/v1/jobs", json={"jdl": SIMPLE}).json()["id"]
    assert alice.get(f"/api/v1/jobs/{job_id}/jdl", params={"form": "submitted"}).text == SIMPLE
    expanded = alice.get(f"/api/v1/jobs/{job_id}/jdl").text
    assert "GlueCEStateStatus" in expanded and "Rank" in expanded
    assert alice.get(f"/api/v1/jobs/{job_id}/jdl", params={"form": "x"}).status_code == 422


def test_concurrent_submissions_get_distinct_ids(server) -> None:
    clients = [server.user_client() for _ in range(6)]
    jdl = 'JobType = "Parametric"; Executable = "/bin/true"; Parameters = 50;'

    def submit_many(client: httpx.Client) -> list[int]:
        ids: list[int] = []
        for _ in range(4):
            r = client.post("/api/v1/jobs", json={"jdl": jdl})
            assert r.status_code == 201, r.text
            ids += [r.json()["id"], *(n["id"] for n in r.json()["nodes"])]
        return ids

    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(submit_many, clients))
    every = [i for ids in results for i in ids]
    assert len(every) == len(set(every)) == 6 * 4 * 51
    with server.db.read() as conn:
        stored = conn.execute(select(func.count()).where(jobs.c.id.in_(every))).scalar_one()
    assert stored == len(every)


def test_large_parametric_job_is_stored_completely(server, alice: httpx.Client) -> None:
    """Past a few hundred rows the store switches to bulk paths (COPY on PostgreSQL)."""
    jdl = (
        'JobType = "Parametric"; Executable = "/bin/echo"; Arguments = "_PARAM_";'
        ' Parameters = 500; InputSandbox = {"shared.txt"};'
    )
    r = alice.post("/api/v1/jobs", data={"jdl": jdl}, files=[("shared.txt", ("s", b"shared"))])
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["nodes"]) == 500
    status = alice.get(f"/api/v1/jobs/{body['id']}", params={"nodes": "false"}).json()
    assert status["children"] == {"total": 500, "states": {"WAITING": 500}}
    last = body["nodes"][-1]
    node = alice.get(f"/api/v1/jobs/{last['id']}").json()
    assert node["parent_id"] == body["id"] and node["state"] == "WAITING"
    assert node["retry_count"] == 3 and node["expiry_time"] and node["cpus"] == 1
    assert '"499"' in alice.get(f"/api/v1/jobs/{last['id']}/jdl").text
    events = alice.get(f"/api/v1/jobs/{last['id']}/events").json()["events"]
    assert [e["event"] for e in events] == ["RegJob", "Accepted"]
    with server.db.read() as conn:
        refs = conn.execute(
            select(func.count()).where(job_inputs.c.job_id.in_([n["id"] for n in body["nodes"]]))
        ).scalar_one()
    assert refs == 500
    assert alice.post(f"/api/v1/jobs/{body['id']}/cancel").json()["cancelled"][-1] == last["id"]
