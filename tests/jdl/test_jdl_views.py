"""What the server stores: resources, input sandbox references; and syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from jdl_helpers import jdl

from pilotwms.jdl import (
    SCHEMA,
    JDLSyntaxError,
    ResourceRequest,
    SandboxRef,
    input_sandbox,
    load_jdl,
    parse_jdl,
    resources,
)
from pilotwms.jdl.schema import AttrType

RESOURCES = [
    ("defaults", "", ResourceRequest()),
    ("cpunumber", "CpuNumber = 4;", ResourceRequest(cpus=4)),
    ("nodenumber", "NodeNumber = 2;", ResourceRequest(cpus=2)),
    ("dirac processors", "NumberOfProcessors = 8;", ResourceRequest(cpus=8)),
    ("smp granularity alone", "SMPGranularity = 2;", ResourceRequest(cpus=2)),
    ("cpunumber wins", "CpuNumber = 4; SMPGranularity = 2;", ResourceRequest(cpus=4)),
    ("whole node", "WholeNodes = true;", ResourceRequest(whole_node=True)),
    ("memory", "Memory = 2048;", ResourceRequest(memory_mb=2048)),
    ("dirac memory", "MaxRAM = 4000;", ResourceRequest(memory_mb=4000)),
    (
        "times",
        "MaxWallTime = 3600; CPUTime = 600;",
        ResourceRequest(wall_time_s=3600, cpu_time_s=600),
    ),
    ("max cpu time", "MaxCPUTime = 60;", ResourceRequest(cpu_time_s=60)),
    ("wrong types ignored", 'CpuNumber = "4"; Memory = 1.5;', ResourceRequest()),
]


@pytest.mark.parametrize(
    ("text", "expected"), [r[1:] for r in RESOURCES], ids=[r[0] for r in RESOURCES]
)
def test_resources(text: str, expected: ResourceRequest) -> None:
    assert resources(jdl('Executable = "/bin/true"; ' + text)) == expected


SANDBOX = [
    ("local file", '"run.sh"', None, SandboxRef("run.sh", "run.sh", "local")),
    ("local path", '"data/in.txt"', None, SandboxRef("in.txt", "data/in.txt", "local")),
    ("absolute path", '"/home/u/x.dat"', None, SandboxRef("x.dat", "/home/u/x.dat", "local")),
    (
        "https",
        '"https://h/p/a%20b.txt"',
        None,
        SandboxRef("a b.txt", "https://h/p/a%20b.txt", "uri"),
    ),
    ("http", '"http://h/x"', None, SandboxRef("x", "http://h/x", "uri")),
    ("file uri", '"file:///tmp/x"', None, SandboxRef("x", "file:///tmp/x", "uri")),
    ("gsiftp", '"gsiftp://se/f"', None, SandboxRef("f", "gsiftp://se/f", "unsupported")),
    ("lfn", '"lfn:/grid/vo/f"', None, SandboxRef("f", "lfn:/grid/vo/f", "unsupported")),
    (
        "base uri from jdl",
        '"x.dat"',
        "https://store/in/",
        SandboxRef("x.dat", "https://store/in/x.dat", "uri"),
    ),
    (
        "base uri gsiftp",
        '"x.dat"',
        "gsiftp://se/dir",
        SandboxRef("x.dat", "gsiftp://se/dir/x.dat", "unsupported"),
    ),
]


@pytest.mark.parametrize(
    ("entry", "base", "expected"), [s[1:] for s in SANDBOX], ids=[s[0] for s in SANDBOX]
)
def test_input_sandbox_kinds(entry: str, base: str | None, expected: SandboxRef) -> None:
    text = f'Executable = "/bin/true"; InputSandbox = {{{entry}}};'
    if base:
        text += f' InputSandboxBaseURI = "{base}";'
    assert input_sandbox(jdl(text)) == [expected]


def test_input_sandbox_string_base_parameter_and_absence() -> None:
    assert input_sandbox(jdl('InputSandbox = "a.sh";'), base_uri="https://h") == [
        SandboxRef("a.sh", "https://h/a.sh", "uri")
    ]
    assert input_sandbox(jdl('Executable = "/bin/true";')) == []
    assert input_sandbox(jdl('InputSandbox = {"", "b"};')) == [SandboxRef("b", "b", "local")]


def test_syntax_error_str_has_location_source_line_and_caret() -> None:
    text = 'Executable = "/bin/true";\nArguments = "a" "b";\n'
    with pytest.raises(JDLSyntaxError) as info:
        parse_jdl(text, "job.jdl")
    error = info.value
    assert (error.filename, error.line) == ("job.jdl", 2)
    lines = str(error).splitlines()
    assert lines[0] == f"job.jdl:2:{error.column}: {error.message}"
    assert lines[1] == 'Arguments = "a" "b";'
    assert lines[2] == " " * (error.column - 1) + "^"
    assert error.to_dict()["line"] == 2


def test_caret_follows_tabs() -> None:
    with pytest.raises(JDLSyntaxError) as info:
        parse_jdl('\tExecutable = "/bin/true"\n\tArguments = "x";', "t.jdl")
    caret = str(info.value).splitlines()[2]
    assert caret.startswith("\t") and caret.endswith("^")


def test_bracketless_and_comments_keep_true_positions() -> None:
    ad = parse_jdl('// comment\n# another\n\nExecutable = "/bin/true";\n  Arguments = "x";')
    assert ad.position("Executable") == (4, 1)
    assert ad.position("Arguments") == (5, 3)


def test_load_jdl_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jdl"
    path.write_text("Executable = ;")
    with pytest.raises(JDLSyntaxError) as info:
        load_jdl(path)
    assert info.value.filename == str(path)


def test_schema_covers_the_reference_attributes() -> None:
    for name in (
        "Executable",
        "Arguments",
        "StdInput",
        "StdOutput",
        "StdError",
        "InputSandbox",
        "InputSandboxBaseURI",
        "OutputSandbox",
        "OutputSandboxDestURI",
        "OutputSandboxBaseDestURI",
        "Environment",
        "Prologue",
        "PrologueArguments",
        "Epilogue",
        "EpilogueArguments",
        "Requirements",
        "Rank",
        "FuzzyRank",
        "RetryCount",
        "ShallowRetryCount",
        "CpuNumber",
        "SMPGranularity",
        "HostNumber",
        "WholeNodes",
        "JobType",
        "Type",
        "Nodes",
        "Dependencies",
        "Parameters",
        "ParameterStart",
        "ParameterStep",
        "NodeName",
        "DefaultNodeRetryCount",
        "DefaultNodeShallowRetryCount",
        "max_nodes_running",
        "InputData",
        "DataAccessProtocol",
        "DataRequirements",
        "OutputData",
        "OutputSE",
        "VirtualOrganisation",
        "MyProxyServer",
        "UserTags",
        "PerusalFileEnable",
        "ListenerPort",
        "ShortDeadlineJob",
        "ExpiryTime",
        "JobName",
        "CPUTime",
        "Site",
        "Tags",
        "Platform",
        "Priority",
        "JobGroup",
    ):
        assert name in SCHEMA, name
    assert SCHEMA["executable"].mandatory
    assert SCHEMA["ShallowRetryCount"].minimum == -1
    assert SCHEMA["CpuNumber"].minimum == 1
    assert SCHEMA["InputSandbox"].type is AttrType.STRING_OR_LIST
    assert SCHEMA["Parameters"].job_types == frozenset({"parametric"})
    assert SCHEMA.lookup("NoSuchThing") is None
    assert all(spec.meaning for spec in SCHEMA.values())
