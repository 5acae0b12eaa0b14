"""The Python API against a real server, on SQLite and PostgreSQL: submission with sandbox
files (uploaded once), compound jobs, status, listing, events, cancel, output, wait."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pilotwms.client import (
    AuthError,
    Client,
    ClientError,
    Compound,
    ConflictError,
    JDLRejected,
    Job,
    JobDescription,
    NotFoundError,
    UploadProgress,
    WaitTimeout,
)
from wms_server import RunningServer, add_output, advance

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_submit_file_uploads_sandbox_relative_to_the_jdl(
    server: RunningServer, client: Client, tmp_path: Path
) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("42")
    jdl = tmp_path / "job.jdl"
    jdl.write_text('Executable = "run.sh"; InputSandbox = {"run.sh", "data/in.txt"};\n')
    events: list[UploadProgress] = []
    job = client.submit(jdl, progress=events.append)
    assert isinstance(job, Job) and not isinstance(job, Compound)
    status = job.status()
    assert status.state == "WAITING" and status.kind == "job" and not status.finished
    digest = hashlib.sha256(b"42").hexdigest()
    assert client.has_blob(digest)
    assert {e.entry for e in events} == {"run.sh", "data/in.txt"}
    assert events[-1].total_sent == events[-1].total_size == len("#!/bin/sh\necho hi\n") + 2
    assert "InputSandbox" in job.jdl("submitted")


def test_a_file_shared_by_many_jobs_is_uploaded_once(client: Client, tmp_path: Path) -> None:
    (tmp_path / "common.sh").write_bytes(b"shared content " + tmp_path.name.encode())
    jdl = tmp_path / "a.jdl"
    jdl.write_text('Executable = "common.sh"; InputSandbox = {"common.sh"};')
    first: list[UploadProgress] = []
    client.submit(jdl, progress=first.append)
    assert first and not first[-1].skipped
    again: list[UploadProgress] = []
    jobs = client.submit_bulk([jdl, jdl, jdl], progress=again.append)
    assert len(jobs) == 3 and len({j.id for j in jobs}) == 3
    assert [e.skipped for e in again] == [True]


def test_files_and_text_submission(client: Client) -> None:
    job = client.submit(
        'Executable = "x.sh"; InputSandbox = {"x.sh"};', files={"x.sh": b"echo from bytes"}
    )
    assert client.has_blob(hashlib.sha256(b"echo from bytes").hexdigest())
    assert job.status().state == "WAITING"


def test_parametric_job_is_a_compound_with_nodes(client: Client) -> None:
    job = client.submit(EXAMPLES / "parametric.jdl")
    assert isinstance(job, Compound) and job.kind == "parametric"
    nodes = job.nodes()
    assert [n.name for n in nodes] == [f"Node_{i}" for i in range(5)]
    status = job.status()
    assert status.children is not None and status.children.total == 5
    assert status.children.count("WAITING") == 5 and len(status.nodes) == 5
    again = client.job(job.id)
    assert isinstance(again, Compound) and [n.id for n in again.nodes()] == [n.id for n in nodes]


def test_dag_with_a_file_node_is_inlined(client: Client, tmp_path: Path) -> None:
    (tmp_path / "b.jdl").write_text('Executable = "/bin/echo"; Arguments = "B";')
    jdl = tmp_path / "dag.jdl"
    jdl.write_text(
        '[ Type = "dag"; nodes = [ A = [ description = [ Executable = "/bin/true"; ] ];\n'
        '  B = [ file = "b.jdl" ]; ]; dependencies = { {A, B} }; ]\n'
    )
    job = client.submit(jdl)
    assert isinstance(job, Compound) and job.kind == "dag"
    status = job.status()
    ids = {n.name: n.id for n in status.nodes}
    assert status.edges == [(ids["A"], ids["B"])]
    node_b = client.job(ids["B"])
    assert 'Arguments = "B"' in node_b.jdl("expanded")


def test_collection_example_with_its_node_file(client: Client) -> None:
    job = client.submit(EXAMPLES / "collection.jdl")
    assert isinstance(job, Compound)
    assert sorted(n.name or "" for n in job.nodes()) == ["date", "english", "uname"]


def test_jdl_errors_carry_file_line_column_and_caret(client: Client, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jdl"
    bad.write_text('Executable = "/bin/true";\nArguments = ;\n')
    with pytest.raises(JDLRejected) as info:
        client.submit(bad)
    err = info.value
    assert (err.filename, err.line, err.column) == (str(bad), 2, 13)
    assert str(err).splitlines()[-2:] == ["Arguments = ;", " " * 12 + "^"]
    with pytest.raises(JDLRejected) as invalid:
        client.submit('Arguments = 3;\nRetryCount = "x";')
    assert len(invalid.value.problems) >= 2 and "<jdl>:2:" in str(invalid.value)


def test_server_refusal_keeps_the_problem(client: Client) -> None:
    with pytest.raises(ClientError) as info:
        client.submit('Executable = "/bin/true";\nInputSandbox = {"gsiftp://se/f"};')
    assert info.value.status == 400 and "gsiftp://se/f" in str(info.value)
    assert info.value.problem["type"].startswith("urn:pilotwms:problem:")


def test_missing_sandbox_file_is_reported_locally(client: Client, tmp_path: Path) -> None:
    jdl = tmp_path / "j.jdl"
    jdl.write_text('Executable = "a.sh";\nInputSandbox = {"a.sh"};')
    with pytest.raises(JDLRejected, match=r'"a.sh" not found') as info:
        client.submit(jdl)
    assert info.value.line == 2


def test_listing_follows_pages_and_filters(server: RunningServer, client: Client) -> None:
    ids = [j.id for j in client.submit_bulk(['Executable = "/bin/true";'] * 7)]
    listed = [s.id for s in client.jobs(page_size=3)]
    assert listed == sorted(listed) and set(ids) <= set(listed)
    advance(server, ids[0], "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    assert [s.id for s in client.jobs(state="DONE")] == [ids[0]]
    assert [s.id for s in client.jobs(state=["DONE", "RUNNING"], page_size=1)] == [ids[0]]
    future = datetime.now(UTC) + timedelta(days=1)
    assert list(client.jobs(since=future)) == []


def test_events_cancel_and_conflict(client: Client) -> None:
    job = client.submit('Executable = "/bin/true";')
    result = job.cancel()
    assert result.cancelled == [job.id]
    assert job.status().state == "CANCELLED"
    assert [e.event for e in job.events()][:2] == ["RegJob", "Accepted"]
    assert job.events()[-1].state_to == "CANCELLED"
    with pytest.raises(ConflictError):
        job.cancel()


def test_wait_returns_final_status_and_times_out(server: RunningServer, client: Client) -> None:
    job = client.submit('Executable = "/bin/true";')
    with pytest.raises(WaitTimeout) as info:
        job.wait(timeout=0.3, poll=0.1)
    assert isinstance(info.value, TimeoutError)
    advance(server, job.id, "READY", "RUNNING", "DONE", done_code="failed", exit_code=3)
    final = job.wait(timeout=30, poll=0.1)
    assert final.state == "DONE" and final.exit_code == 3 and not final.succeeded
    assert final.describe() == "Done (Exit Code !=0)"


def test_output_download_is_extracted_safely(
    server: RunningServer, client: Client, tmp_path: Path
) -> None:
    job = client.submit('Executable = "/bin/true";')
    advance(server, job.id, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    add_output(server, job.id, "std.out", b"hello\n")
    add_output(server, job.id, "sub/result.txt", b"42")
    assert {f.name for f in job.output_files()} == {"std.out", "sub/result.txt"}
    written = job.output(tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "std.out",
        "sub/result.txt",
    ]
    assert (tmp_path / "out" / "sub" / "result.txt").read_bytes() == b"42"
    per_file = job.output(tmp_path / "per-file", per_file=True, clear=True)
    assert len(per_file) == 2 and (tmp_path / "per-file" / "std.out").read_text() == "hello\n"
    assert job.status().state == "CLEARED"


def test_unknown_job_and_bad_token(server: RunningServer, client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.job(10**9)
    with Client(server.base_url, "not-a-token") as stranger, pytest.raises(AuthError) as info:
        stranger.job(1)
    assert info.value.status == 401 and info.value.problem["status"] == 401


def test_builder_submission_list_match_and_pilots(client: Client) -> None:
    description = JobDescription(
        executable="run.sh", input_sandbox=["run.sh"], stdout="out", output_sandbox=["out"]
    )
    job = client.submit(description, files={"run.sh": b"#!/bin/sh\necho built\n"})
    assert "run.sh" in job.jdl("submitted")
    match = client.list_match(description.with_changes(input_sandbox=[], executable="/bin/true"))
    assert match.requirements and isinstance(match.matching, list)
    assert isinstance(client.pilots(), list)


def test_bulk_keeps_same_named_files_of_different_jdls_apart(
    server: RunningServer, client: Client, tmp_path: Path
) -> None:
    from sqlalchemy import select

    from pilotwms.server.db import job_inputs

    paths = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "run.sh").write_text(f"echo {name}\n")
        (folder / "job.jdl").write_text('Executable = "run.sh"; InputSandbox = {"run.sh"};')
        paths.append(folder / "job.jdl")
    first, second = client.submit_bulk(paths)
    for job, name in ((first, "one"), (second, "two")):
        with server.db.read() as conn:
            digest = conn.execute(
                select(job_inputs.c.digest).where(job_inputs.c.job_id == job.id)
            ).scalar_one()
        assert digest == hashlib.sha256(f"echo {name}\n".encode()).hexdigest()
