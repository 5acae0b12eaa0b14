"""What the client does without a server: configuration, error mapping and rendering, the
local checks of a submission, the job description builder."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pilotwms.client import (
    AuthError,
    Client,
    ClientConfig,
    ClientError,
    ConfigError,
    JDLRejected,
    JobDescription,
    NotFoundError,
    ServerUnavailable,
)
from pilotwms.client.errors import error_from_response
from pilotwms.client.jobs import backoff_intervals
from pilotwms.client.submission import prepare
from pilotwms.jdl import expand, parse_jdl, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def response(status: int, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        json=body,
        headers=headers,
        request=httpx.Request("GET", "http://wms/api/v1/jobs"),
    )


def test_config_file_under_xdg_and_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "pilotwms" / "client.toml"
    path.parent.mkdir()
    path.write_text('url = "https://file"\ntoken = "from-file"\nverify = "/ca.pem"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    config = ClientConfig.load(env)
    assert (config.url, config.token, config.verify) == ("https://file", "from-file", "/ca.pem")
    assert config.sources == {"url": str(path), "token": str(path), "verify": str(path)}
    config = ClientConfig.load({**env, "PILOTWMS_TOKEN": "from-env", "PILOTWMS_VERIFY": "no"})
    assert (config.token, config.verify) == ("from-env", False)
    assert config.sources is not None and config.sources["token"] == "$PILOTWMS_TOKEN"


def test_missing_configuration_names_the_file_and_the_variables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Client.from_config({"XDG_CONFIG_HOME": str(tmp_path)})
    message = str(info.value)
    assert str(tmp_path / "pilotwms" / "client.toml") in message
    assert "PILOTWMS_URL" in message and "PILOTWMS_TOKEN" in message


def test_bad_configuration_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("url = \n")
    with pytest.raises(ConfigError, match=str(path)):
        ClientConfig.load({"PILOTWMS_CONFIG": str(path)})
    path.write_text('url = "x"\ntokn = "y"\n')
    with pytest.raises(ConfigError, match="tokn"):
        ClientConfig.load({"PILOTWMS_CONFIG": str(path)})


def test_problem_responses_map_to_the_hierarchy() -> None:
    assert isinstance(error_from_response(response(401, {"detail": "no"})), AuthError)
    assert isinstance(error_from_response(response(403, {"detail": "no"})), AuthError)
    missing = error_from_response(response(404, {"detail": "job 7 not found", "status": 404}))
    assert isinstance(missing, NotFoundError) and missing.problem["status"] == 404
    busy = error_from_response(response(503, {"detail": "busy"}, {"Retry-After": "2"}))
    assert isinstance(busy, ServerUnavailable) and busy.retry_after == 2.0
    other = error_from_response(response(413, {"detail": "too large"}))
    assert type(other) is ClientError and str(other) == "too large"


def test_server_syntax_error_renders_with_a_caret() -> None:
    problem = {
        "type": "urn:pilotwms:problem:jdl-syntax-error",
        "status": 400,
        "detail": "<jdl>:2:13: expected a value",
        "filename": "<jdl>",
        "line": 2,
        "column": 13,
        "source_line": "Arguments = ;",
    }
    err = error_from_response(response(400, problem), filename="job.jdl")
    assert isinstance(err, JDLRejected)
    assert str(err) == "job.jdl:2:13: expected a value\nArguments = ;\n" + " " * 12 + "^"


def test_server_validation_problems_use_the_submitted_text() -> None:
    problem = {
        "type": "urn:pilotwms:problem:jdl-validation-error",
        "status": 400,
        "detail": "x",
        "filename": "<jdl>",
        "problems": [
            {"line": 2, "column": 3, "message": "bad", "hint": "fix it", "severity": "error"}
        ],
    }
    err = error_from_response(response(400, problem))
    assert isinstance(err, JDLRejected)
    rendered = err.render('A = 1;\n  B = "x";\n')
    assert rendered.splitlines() == [
        "<jdl>:2:3: error: bad",
        '  B = "x";',
        "  ^",
        "    hint: fix it",
    ]


def test_prepare_finds_every_nodes_sandbox_and_inlines_node_files() -> None:
    collection = prepare(EXAMPLES / "collection.jdl")
    assert [f.entry for f in collection.files] == ["hello.sh"]
    assert "file" not in collection.jdl and "/bin/uname" in collection.jdl
    assert expand(parse_jdl(collection.jdl)).kind == "collection"
    hello = prepare(EXAMPLES / "hello.jdl")
    assert hello.jdl == (EXAMPLES / "hello.jdl").read_text()
    assert hello.files[0].path == EXAMPLES / "hello.sh"


def test_parametric_sandbox_entries_varying_with_the_parameter(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"in_{i}.txt").write_text(str(i))
    jdl = tmp_path / "p.jdl"
    jdl.write_text(
        '[ JobType = "Parametric"; Executable = "/bin/cat"; Arguments = "in__PARAM_.txt";'
        ' Parameters = 3; InputSandbox = {"in__PARAM_.txt"}; ]'
    )
    assert sorted(f.entry for f in prepare(jdl).files) == ["in_0.txt", "in_1.txt", "in_2.txt"]


def test_missing_node_file_is_a_located_error(tmp_path: Path) -> None:
    jdl = tmp_path / "c.jdl"
    jdl.write_text('[ Type = "collection";\n  nodes = { [ file = "gone.jdl"; ] }; ]')
    with pytest.raises(JDLRejected, match=r"gone\.jdl"):
        prepare(jdl)


def test_backoff_grows_to_the_poll_interval() -> None:
    step = backoff_intervals(2.0, first=0.5)
    assert [step() for _ in range(6)] == [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0]


def test_builder_produces_valid_jdl() -> None:
    job = JobDescription(
        executable="run.sh",
        arguments=["--name", "two words"],
        input_sandbox=["run.sh", "data.txt"],
        output_sandbox=["out.txt"],
        stdout="std.out",
        stderr="std.err",
        environment={"MODE": "fast"},
        requirements='other.GlueCEStateStatus == "Production"',
        rank="other.GlueCEStateFreeCPUs",
        retry_count=2,
        cpus=4,
        memory_mb=2000,
        extra={"VirtualOrganisation": "demo"},
    )
    ad = parse_jdl(job.to_jdl())
    report = validate(ad)
    assert not report.errors and not report.warnings
    assert ad.evaluate("Arguments") == "--name 'two words'"
    assert ad.evaluate("Environment") == ["MODE=fast"]
    assert ad.evaluate("CpuNumber") == 4 and ad.evaluate("RetryCount") == 2
    with pytest.raises(ValueError, match="requirements"):
        JobDescription(executable="/bin/true", requirements="other.X >").to_jdl()


def test_parametric_builder_expands_like_glite() -> None:
    job = JobDescription.parametric(
        parameters=4,
        start=0,
        step=2,
        executable="/bin/echo",
        arguments="_PARAM_",
        stdout="out__PARAM_.txt",
        output_sandbox=["out__PARAM_.txt"],
    )
    ad = parse_jdl(job.to_jdl())
    assert not validate(ad).errors
    assert [n.name for n in expand(ad).nodes] == ["Node_0", "Node_2"]
    listed = JobDescription.parametric(["a", "b"], executable="/bin/echo", arguments="_PARAM_")
    assert [n.name for n in expand(parse_jdl(listed.to_jdl())).nodes] == ["Node_a", "Node_b"]
