"""Cancel (single, compound, running) and the output sandbox (list, file, tar.gz, clear)."""

from __future__ import annotations

import io
import tarfile

import httpx
from sqlalchemy import select

from pilotwms.server.db import job_commands
from wms_server import add_output, advance

SIMPLE = 'Executable = "/bin/true";'
PARAMETRIC = 'JobType = "Parametric"; Executable = "/bin/true"; Parameters = 4;'


def submit(client: httpx.Client, jdl: str = SIMPLE) -> dict:
    r = client.post("/api/v1/jobs", json={"jdl": jdl})
    assert r.status_code == 201, r.text
    return r.json()


def test_cancel_waiting_job(alice: httpx.Client) -> None:
    job = submit(alice)["id"]
    r = alice.post(f"/api/v1/jobs/{job}/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] == [job]
    status = alice.get(f"/api/v1/jobs/{job}").json()
    assert status["state"] == "CANCELLED" and status["reason"] == "cancelled by the user"
    again = alice.post(f"/api/v1/jobs/{job}/cancel")
    assert again.status_code == 409
    assert again.json()["from"] == "CANCELLED" and again.json()["to"] == "CANCELLED"


def test_cancel_running_job_asks_its_pilot(server, alice: httpx.Client) -> None:
    job = submit(alice)["id"]
    advance(server, job, "READY", "RUNNING")
    r = alice.post(f"/api/v1/jobs/{job}/cancel").json()
    assert r["cancelled"] == [] and r["cancel_requested"] == [job]
    status = alice.get(f"/api/v1/jobs/{job}").json()
    assert status["state"] == "RUNNING" and status["cancel_requested"] is True
    with server.db.read() as conn:
        commands = conn.execute(select(job_commands).where(job_commands.c.job_id == job)).all()
    assert [c.command for c in commands] == ["cancel"]
    alice.post(f"/api/v1/jobs/{job}/cancel")
    with server.db.read() as conn:
        assert (
            len(conn.execute(select(job_commands).where(job_commands.c.job_id == job)).all()) == 1
        )
    events = alice.get(f"/api/v1/jobs/{job}/events").json()["events"]
    assert events[-1]["event"] == "CancelRequest" and events[-1]["state_to"] == "RUNNING"


def test_cancel_compound_job_leaves_finished_nodes(server, alice: httpx.Client) -> None:
    para = submit(alice, PARAMETRIC)
    n = [x["id"] for x in para["nodes"]]
    advance(server, n[0], "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    advance(server, n[1], "READY", "RUNNING")
    r = alice.post(f"/api/v1/jobs/{para['id']}/cancel").json()
    assert sorted(r["cancelled"]) == [n[2], n[3]] and r["cancel_requested"] == [n[1]]
    states = {x["id"]: x["state"] for x in alice.get(f"/api/v1/jobs/{para['id']}").json()["nodes"]}
    assert states == {n[0]: "DONE", n[1]: "RUNNING", n[2]: "CANCELLED", n[3]: "CANCELLED"}
    advance(server, n[1], "CANCELLED")
    assert alice.get(f"/api/v1/jobs/{para['id']}").json()["state"] == "CANCELLED"


def test_cancel_of_someone_elses_job_is_404(server, alice: httpx.Client) -> None:
    job = submit(alice)["id"]
    assert server.user_client().post(f"/api/v1/jobs/{job}/cancel").status_code == 404
    assert alice.get(f"/api/v1/jobs/{job}").json()["state"] == "WAITING"


def test_output_list_file_archive_and_clear(server, alice: httpx.Client) -> None:
    job = submit(alice)["id"]
    advance(server, job, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    add_output(server, job, "std.out", b"hello\n")
    add_output(server, job, "res/data.bin", b"\x00\x01")
    listing = alice.get(f"/api/v1/jobs/{job}/output").json()["files"]
    assert [(f["name"], f["size"]) for f in listing] == [("res/data.bin", 2), ("std.out", 6)]
    assert alice.get(f"/api/v1/jobs/{job}/output/std.out").content == b"hello\n"
    assert alice.get(f"/api/v1/jobs/{job}/output/res/data.bin").content == b"\x00\x01"
    assert alice.get(f"/api/v1/jobs/{job}/output/nope").status_code == 404
    archive = alice.get(f"/api/v1/jobs/{job}/output.tar.gz", params={"clear": "true"})
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["res", "res/data.bin", "std.out"] or sorted(
            m.name for m in tar.getmembers() if m.isfile()
        ) == ["res/data.bin", "std.out"]
        assert tar.extractfile("std.out").read() == b"hello\n"  # type: ignore[union-attr]
    status = alice.get(f"/api/v1/jobs/{job}").json()
    assert status["state"] == "CLEARED"
    assert alice.get(f"/api/v1/jobs/{job}/output").json()["files"] == []
    events = alice.get(f"/api/v1/jobs/{job}/events").json()["events"]
    assert events[-1]["event"] == "Clear"
    assert events[-1]["reason"] == "user retrieved output sandbox"


def test_clear_of_unfinished_job_is_409(alice: httpx.Client) -> None:
    job = submit(alice)["id"]
    r = alice.get(f"/api/v1/jobs/{job}/output", params={"clear": "true"})
    assert r.status_code == 409


def test_compound_output_has_one_folder_per_node(server, alice: httpx.Client) -> None:
    para = submit(alice, PARAMETRIC)
    for node in para["nodes"][:2]:
        advance(server, node["id"], "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
        add_output(server, node["id"], "std.out", node["name"].encode())
    listing = alice.get(f"/api/v1/jobs/{para['id']}/output").json()["files"]
    assert [f["name"] for f in listing] == ["Node_0/std.out", "Node_1/std.out"]
    assert alice.get(f"/api/v1/jobs/{para['id']}/output/Node_1/std.out").content == b"Node_1"
    archive = alice.get(f"/api/v1/jobs/{para['id']}/output.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert files == {"Node_0/std.out": b"Node_0", "Node_1/std.out": b"Node_1"}
    cleared = alice.get(f"/api/v1/jobs/{para['id']}/output", params={"clear": "true"})
    assert cleared.status_code == 200
    nodes = {x["name"]: x["state"] for x in alice.get(f"/api/v1/jobs/{para['id']}").json()["nodes"]}
    assert nodes == {
        "Node_0": "CLEARED",
        "Node_1": "CLEARED",
        "Node_2": "WAITING",
        "Node_3": "WAITING",
    }
