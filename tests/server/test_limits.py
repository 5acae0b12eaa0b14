"""Size limits answer 413 with a message naming the file and the limit."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from wms_server import RunningServer, make_settings, serving


@pytest.fixture(scope="module")
def server(database, tmp_path_factory) -> Iterator[RunningServer]:
    settings = make_settings(
        database,
        tmp_path_factory.mktemp("limits"),
        max_sandbox_file_bytes=1000,
        max_sandbox_job_bytes=1500,
        max_jdl_bytes=2000,
        max_nodes=50,
    )
    with serving(settings) as running:
        yield running


JDL = 'Executable = "/bin/cat"; InputSandbox = {"a.bin", "b.bin"};'


def test_file_over_the_per_file_limit_is_413(alice: httpx.Client) -> None:
    r = alice.post(
        "/api/v1/jobs",
        data={"jdl": JDL},
        files=[("a.bin", ("a.bin", b"x" * 1001)), ("b.bin", ("b.bin", b"y"))],
    )
    assert r.status_code == 413
    body = r.json()
    assert "a.bin" in body["detail"] and body["limit"] == 1000


def test_sandbox_over_the_per_job_limit_is_413(alice: httpx.Client) -> None:
    r = alice.post(
        "/api/v1/jobs",
        data={"jdl": JDL},
        files=[("a.bin", ("a.bin", b"x" * 900)), ("b.bin", ("b.bin", b"y" * 900))],
    )
    assert r.status_code == 413
    assert r.json()["limit"] == 1500


def test_upload_over_the_limit_is_413(alice: httpx.Client) -> None:
    r = alice.post("/api/v1/sandboxes", content=b"z" * 1001)
    assert r.status_code == 413 and r.json()["limit"] == 1000


def test_too_many_nodes_is_413(alice: httpx.Client) -> None:
    r = alice.post(
        "/api/v1/jobs",
        json={"jdl": 'JobType = "Parametric"; Executable = "/bin/true"; Parameters = 51;'},
    )
    assert r.status_code == 413 and r.json()["limit"] == 50


def test_too_long_jdl_is_413(alice: httpx.Client) -> None:
    jdl = 'Executable = "/bin/true"; Arguments = "' + "a" * 2100 + '";'
    r = alice.post("/api/v1/jobs", json={"jdl": jdl})
    assert r.status_code == 413


def test_within_limits_is_accepted(alice: httpx.Client) -> None:
    r = alice.post(
        "/api/v1/jobs",
        data={"jdl": JDL},
        files=[("a.bin", ("a.bin", b"x" * 700)), ("b.bin", ("b.bin", b"y" * 700))],
    )
    assert r.status_code == 201, r.text
