"""Job spec validation: every defect is found, and a bad spec still names its attempt."""

from __future__ import annotations

from typing import Any

import pytest

from pilotwms.agent.jobspec import JobSpecError, normalise_digest, parse_job_spec

DIGEST = "a" * 64


def base(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"job_id": "42", "attempt": 3, "executable": "/bin/true"}
    raw.update(extra)
    return raw


def test_full_spec() -> None:
    spec = parse_job_spec(
        base(
            arguments=["-v", "two words"],
            cores=4,
            memory_mb=2000,
            environment={"A": "1"},
            stdin="in",
            stdout="out",
            stderr="out",
            prologue={"path": "pre.sh", "arguments": ["x"]},
            epilogue="/bin/post",
            input_sandbox=[
                {"name": "pre.sh", "digest": DIGEST, "size": 10},
                {"name": "sub/data", "url": "https://example.org/data"},
            ],
            output_sandbox=["out", "*.root"],
            output_destinations={"out": "https://se.example.org/out"},
            output_base_uri="gsiftp://unused",
            max_wall_time_s=3600,
            max_memory_mb=4000,
            perusal=True,
        )
    )
    assert spec.key == "42/3"
    assert spec.cores == 4 and spec.memory_mb == 2000
    assert spec.prologue is not None and spec.prologue.arguments == ["x"]
    assert spec.epilogue is not None and spec.epilogue.path == "/bin/post"
    assert spec.input_sandbox[0].digest == DIGEST
    assert spec.input_sandbox[1].url == "https://example.org/data"
    assert spec.max_wall_time_s == 3600.0
    assert spec.perusal


def test_defaults() -> None:
    spec = parse_job_spec(base())
    assert (spec.cores, spec.memory_mb, spec.arguments, spec.whole_node) == (1, 0, [], False)
    assert spec.max_wall_time_s is None and spec.input_sandbox == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"executable": None}, "executable is required"),
        ({"executable": 5}, "executable must be a string"),
        ({"arguments": "a b"}, "arguments must be a list"),
        ({"cores": 0}, "cores must be at least 1"),
        ({"cores": 1.5}, "cores must be an integer"),
        ({"cores": True}, "cores must be a number"),
        ({"environment": {"A": 1}}, "environment must be an object"),
        ({"environment": {"1A": "x"}}, "not a valid variable name"),
        ({"stdout": "/etc/passwd"}, "absolute path"),
        ({"stderr": "../x"}, "'..' in path"),
        ({"input_sandbox": [{"name": "../x", "digest": DIGEST}]}, "'..' in path"),
        ({"input_sandbox": [{"name": "/abs", "digest": DIGEST}]}, "absolute path"),
        ({"input_sandbox": [{"name": "x", "digest": "md5:abc"}]}, "not a sha256"),
        ({"input_sandbox": [{"name": "x", "url": "ftp://h/x"}]}, "needs a digest or"),
        ({"input_sandbox": [{"name": "x", "digest": DIGEST, "size": -1}]}, "size"),
        (
            {"input_sandbox": [{"name": "x", "digest": DIGEST}, {"name": "x", "url": "file:///x"}]},
            "unique",
        ),
        ({"input_sandbox": "x"}, "input_sandbox must be a list"),
        ({"output_sandbox": ["../../etc"]}, "'..' in path"),
        ({"prologue": {"arguments": []}}, "prologue must be"),
        ({"epilogue": {"path": "x", "arguments": "a"}}, "epilogue.arguments"),
        ({"max_wall_time_s": 0}, "max_wall_time_s must be at least 1"),
        ({"whole_node": "yes"}, "whole_node"),
    ],
)
def test_bad_fields_name_the_attempt(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(JobSpecError) as info:
        parse_job_spec(base(**change))
    assert info.value.job_id == "42" and info.value.attempt == 3
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(JobSpecError) as info:
        parse_job_spec(base(executable=None, cores=-1, stdout="/x"))
    assert len(info.value.problems) == 3


@pytest.mark.parametrize("raw", [None, [], "job", {"executable": "/bin/true"}])
def test_unidentifiable_specs(raw: Any) -> None:
    with pytest.raises(JobSpecError) as info:
        parse_job_spec(raw)
    assert info.value.job_id is None or info.value.attempt is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [(DIGEST, DIGEST), ("sha256:" + DIGEST.upper(), DIGEST), ("abc", None), (5, None)],
)
def test_normalise_digest(text: Any, expected: Any) -> None:
    assert normalise_digest(text) == expected
