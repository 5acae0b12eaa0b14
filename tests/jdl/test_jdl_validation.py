"""Validation: one table row per gLite rule, with the message and where it points."""

from __future__ import annotations

import pytest
from jdl_helpers import jdl

from pilotwms.jdl import JDLValidationError, check, validate

BASE = 'Executable = "/bin/true";\n'

# (name, JDL text, attribute, message fragment, line)
ERRORS = [
    ("missing executable", 'Arguments = "x";', "Executable", "Executable is missing", 1),
    ("executable relative path", 'Executable = "bin/run";', "Executable", "relative path", 1),
    (
        "executable not in sandbox",
        'Executable = "run.sh";\nInputSandbox = {"other.sh"};',
        "Executable",
        "neither an absolute path nor a file of the InputSandbox",
        1,
    ),
    ("executable wildcard", 'Executable = "/bin/r*n";', "Executable", "wildcards", 1),
    ("executable not a string", "Executable = 3;", "Executable", "must be a string", 1),
    (
        "stdinput not in sandbox",
        BASE + 'StdInput = "in.txt";',
        "StdInput",
        "StdInput",
        2,
    ),
    ("stdoutput dot dot", BASE + 'StdOutput = "../out";', "StdOutput", 'begin with ".."', 2),
    ("stderror wildcard", BASE + 'StdError = "e?r";', "StdError", "wildcards", 2),
    (
        "stdout stderr same name different path",
        BASE + 'StdOutput = "a/std.out";\nStdError = "b/std.out";',
        "StdError",
        "same file name only if the absolute path is the same",
        3,
    ),
    (
        "prologue arguments without prologue",
        BASE + 'PrologueArguments = "-x";',
        "PrologueArguments",
        "PrologueArguments given without Prologue",
        2,
    ),
    (
        "epilogue arguments without epilogue",
        BASE + 'EpilogueArguments = "-x";',
        "EpilogueArguments",
        "EpilogueArguments given without Epilogue",
        2,
    ),
    (
        "prologue not in sandbox",
        BASE + 'Prologue = "pre.sh";',
        "Prologue",
        "Prologue",
        2,
    ),
    (
        "osb dest uri cardinality",
        BASE + 'OutputSandbox = {"a", "b"};\nOutputSandboxDestURI = {"gsiftp://h/a"};',
        "OutputSandboxDestURI",
        "cardinalities are different",
        3,
    ),
    (
        "osb dest uri with wildcards",
        BASE + 'OutputSandbox = {"*.txt"};\nOutputSandboxDestURI = {"gsiftp://h/a"};',
        "OutputSandboxDestURI",
        "WildCards",
        3,
    ),
    (
        "dest uri and base dest uri",
        BASE
        + 'OutputSandbox = {"a"};\nOutputSandboxDestURI = {"https://h/a"};\n'
        + 'OutputSandboxBaseDestURI = "https://h/";',
        "OutputSandboxDestURI",
        "cannot both be given",
        3,
    ),
    (
        "osb duplicate names",
        BASE + 'OutputSandbox = {"a/out.txt", "b/out.txt"};',
        "OutputSandbox",
        'file name "out.txt" appears twice',
        2,
    ),
    (
        "isb duplicate names",
        BASE + 'InputSandbox = {"a/in.txt", "b/in.txt"};',
        "InputSandbox",
        "have the same file name",
        2,
    ),
    (
        "input data without protocol",
        BASE + 'InputData = {"lfn:/grid/vo/f"};',
        "InputData",
        "InputData needs DataAccessProtocol",
        2,
    ),
    (
        "input data and data requirements",
        BASE
        + 'InputData = {"lfn:/a"};\nDataAccessProtocol = {"gsiftp"};\n'
        + 'DataRequirements = {[ InputData = {"lfn:/a"}; DataCatalogType = "DLI" ]};',
        "DataRequirements",
        "cannot be given together",
        4,
    ),
    (
        "input data prefix",
        BASE + 'InputData = {"srm://x/y"};\nDataAccessProtocol = {"gsiftp"};',
        "InputData",
        "lfn|guid|si-lfn|si-guid",
        2,
    ),
    (
        "data requirements record incomplete",
        BASE + 'DataRequirements = {[ DataCatalog = "x" ]};\nDataAccessProtocol = "gsiftp";',
        "DataRequirements",
        "each record needs InputData",
        2,
    ),
    (
        "output data lfn",
        BASE + 'OutputData = {[ OutputFile = "o"; LogicalFileName = "o" ]};',
        "OutputData",
        "LogicalFileName must be lfn:",
        2,
    ),
    (
        "listener port not interactive",
        BASE + "ListenerPort = 44000;",
        "ListenerPort",
        "only allowed for interactive jobs",
        2,
    ),
    (
        "smp granularity and host number",
        BASE + "CpuNumber = 4;\nSMPGranularity = 2;\nHostNumber = 2;",
        "HostNumber",
        "mutually exclusive when WholeNodes allocation is not requested",
        4,
    ),
    ("cpunumber zero", BASE + "CpuNumber = 0;", "CpuNumber", "value must be greater than 0", 2),
    (
        "shallow retry below minus one",
        BASE + "ShallowRetryCount = -2;",
        "ShallowRetryCount",
        "(-1 to unset)",
        2,
    ),
    ("retry negative", BASE + "RetryCount = -1;", "RetryCount", "cannot be less than 0", 2),
    ("int given a string", BASE + 'RetryCount = "3";', "RetryCount", "must be an integer", 2),
    ("bool given an int", BASE + "FuzzyRank = 1;", "FuzzyRank", "must be a boolean", 2),
    (
        "requirements a string",
        BASE + 'Requirements = "true";',
        "Requirements",
        "must be a boolean expression",
        2,
    ),
    ("rank a list", BASE + "Rank = {1};", "Rank", "must be a numeric expression", 2),
    ("environment format", BASE + 'Environment = {"NOVALUE"};', "Environment", "=<value>", 2),
    ("string given a list", BASE + 'Arguments = {"a"};', "Arguments", "single string", 2),
    ("unknown jobtype", BASE + 'JobType = "mpi";', "JobType", "MpiCh | Normal", 2),
    (
        "checkpointable",
        BASE + 'JobType = "Checkpointable";',
        "JobType",
        "Checkpointable jobs have been deprecated!",
        2,
    ),
    (
        "partitionable",
        BASE + 'JobType = "partitionable";',
        "JobType",
        "Partitionable jobs have been deprecated!",
        2,
    ),
    (
        "composite job type",
        BASE + 'JobType = {"normal", "interactive"};',
        "JobType",
        "Composite Job Type not yet supported",
        2,
    ),
    ("bad request type", BASE + 'Type = "bulk";', "Type", 'expected "Job", "DAG"', 2),
    (
        "submitto format",
        BASE + 'SubmitTo = "ce.example.org";',
        "SubmitTo",
        "<full-hostname>:<port-number>",
        2,
    ),
    (
        "isb base uri format",
        BASE + 'InputSandboxBaseURI = "host/dir";',
        "InputSandboxBaseURI",
        "protocol://address",
        2,
    ),
    (
        "parameter step zero",
        'JobType = "Parametric";\nExecutable = "/bin/echo";\nArguments = "_PARAM_";\n'
        + "Parameters = 3;\nParameterStep = 0;",
        "ParameterStep",
        "ParameterStep must be different from zero",
        5,
    ),
    (
        "parametric without parameters",
        'JobType = "Parametric";\nExecutable = "/bin/echo";',
        "Parameters",
        "needs Parameters",
        1,
    ),
    (
        "parameter start beyond values",
        'JobType = "Parametric";\nExecutable = "/bin/echo";\nArguments = "_PARAM_";\n'
        + "Parameters = 3;\nParameterStart = 3;",
        "ParameterStart",
        "leaves no node",
        5,
    ),
    (
        "rank on data access cost without input data",
        BASE + "Rank = other.DataAccessCost;",
        "Rank",
        "needs InputData and DataAccessProtocol",
        2,
    ),
    (
        "undefined bare word",
        BASE + "StdOutput = std.out;",
        "StdOutput",
        "unquoted word std.out",
        2,
    ),
]


@pytest.mark.parametrize(
    ("text", "attribute", "fragment", "line"),
    [row[1:] for row in ERRORS],
    ids=[row[0] for row in ERRORS],
)
def test_error_is_reported_with_attribute_line_and_hint(
    text: str, attribute: str, fragment: str, line: int
) -> None:
    report = validate(jdl(text), dialect="glite")
    matching = [p for p in report.errors if fragment in p.message]
    assert matching, [p.message for p in report.errors]
    problem = matching[0]
    assert problem.attribute == attribute
    assert problem.line == line
    assert problem.severity == "error"
    if line:
        assert problem.column >= 1
    assert not report.ok


WARNINGS = [
    ("misspelt shallow retry", BASE + "ShallowRewtryCount = 3;", "did you mean ShallowRetryCount?"),
    ("misspelt stdoutput", BASE + 'StdOuput = "o";', "StdOuput: did you mean StdOutput?"),
    ("misspelt any case", BASE + 'stdouptut = "o";', "did you mean StdOutput?"),
    ("node number deprecated", BASE + "NodeNumber = 2;", "Use CpuNumber instead"),
    ("empty osb entry", BASE + 'OutputSandbox = {"a", ""};', "empty entry"),
    ("host number above cpus", BASE + "CpuNumber = 2;\nHostNumber = 4;", "should not exceed"),
    ("parameters without parametric", BASE + "Parameters = 3;", "Parameters is ignored"),
    (
        "param in static attribute",
        'JobType = "Parametric";\nExecutable = "/bin/echo";\nArguments = "_PARAM_";\n'
        + 'Parameters = 2;\nMyProxyServer = "m_PARAM_";',
        "Found parametric value for non-parametric attribute",
    ),
    (
        "no placeholder",
        'JobType = "Parametric";\nExecutable = "/bin/echo";\nParameters = 2;',
        "no attribute uses _PARAM_",
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [row[1:] for row in WARNINGS], ids=[row[0] for row in WARNINGS]
)
def test_warning_does_not_make_the_jdl_invalid(text: str, fragment: str) -> None:
    report = validate(jdl(text))
    assert report.ok, report.errors
    assert any(fragment in w.message for w in report.warnings), report.warnings


@pytest.mark.parametrize(
    "name",
    ["leftVOMS_FQAN", "rightGlueCEACBR", "MyOwnThing", "x", "JobDescriptionVersion"],
)
def test_unrelated_unknown_attributes_are_silent(name: str) -> None:
    report = validate(jdl(BASE + f"{name} = 1;"))
    assert report.ok and report.warnings == []


def test_all_problems_are_reported_at_once() -> None:
    text = 'Arguments = {"a"};\nRetryCount = -1;\nStdOutput = "../o";\nListenerPort = 1;'
    report = validate(jdl(text))
    assert len(report.errors) == 5
    assert [p.line for p in report.problems] == [1, 1, 2, 3, 4]


def test_every_error_has_a_hint() -> None:
    for _, text, *_ in ERRORS:
        for problem in validate(jdl(text), dialect="glite").errors:
            assert problem.hint, problem


def test_absolute_and_dollar_paths_need_no_sandbox() -> None:
    for exe in ("/bin/true", "$HOME/run.sh", "$VO_SW_DIR/bin/run"):
        assert validate(jdl(f'Executable = "{exe}";')).ok
    # gLite counts braces as wildcards, so "${VAR}" is refused
    assert not validate(jdl('Executable = "${VO_SW_DIR}/run";')).ok


def test_executable_found_by_leaf_of_sandbox_entry() -> None:
    text = 'Executable = "run.sh";\nInputSandbox = {"/home/u/jobs/run.sh", "https://h/x.dat"};'
    assert validate(jdl(text)).ok


def test_parametric_executable_is_not_looked_up_in_the_sandbox() -> None:
    text = (
        'JobType = "Parametric";\nExecutable = "run_PARAM_.sh";\nParameters = 2;\n'
        'InputSandbox = {"run_PARAM_.sh"};'
    )
    assert validate(jdl(text)).ok


def test_dirac_dialect_turns_glite_only_rules_into_warnings() -> None:
    text = 'JobName = "x";\nExecutable = "dirac-jobexec";\nStdOutput = std.out;\n'
    text += 'InputData = {"LFN:/vo/f"};'
    report = validate(jdl(text))
    assert report.dialect == "dirac"
    assert report.ok, report.errors
    assert len(report.warnings) == 3
    assert all("DIRAC" in w.message for w in report.warnings)
    forced = validate(jdl(text), dialect="glite")
    assert len(forced.errors) == 4


def test_check_raises_with_every_error() -> None:
    with pytest.raises(JDLValidationError) as info:
        check(jdl("RetryCount = -1;\nCpuNumber = 0;"), filename="job.jdl")
    error = info.value
    assert len(error.problems) == 3
    assert str(error).splitlines()[0].startswith("job.jdl:")
    assert error.to_dict()["problems"][0]["attribute"] in {"Executable", "RetryCount"}


def test_check_returns_the_report_with_warnings() -> None:
    report = check(jdl(BASE + "ShallowRewtryCount = 1;"))
    assert len(report.warnings) == 1


# Compound requests ---------------------------------------------------------------------------


def test_collection_nodes_are_validated_with_what_they_inherit() -> None:
    text = """[
      Type = "collection";
      InputSandbox = {"run.sh"};
      nodes = {
        [ Executable = "run.sh"; ],
        [ Executable = "missing.sh"; RetryCount = -1; ],
        [ Arguments = "no executable"; ]
      };
    ]"""
    report = validate(jdl(text))
    by_message = {p.message: p for p in report.errors}
    assert len(by_message) == 3, list(by_message)
    missing = by_message[
        'node Node_1: Executable = "missing.sh" is neither an absolute path '
        "nor a file of the InputSandbox"
    ]
    assert (missing.node, missing.line) == ("Node_1", 6)
    assert "node Node_1: RetryCount = -1: value cannot be less than 0" in by_message
    assert "node Node_2: mandatory attribute Executable is missing" in by_message


def test_collection_duplicate_node_names() -> None:
    text = """[ Type = "collection"; nodes = {
        [ NodeName = "a"; Executable = "/bin/true"; ],
        [ NodeName = "a"; Executable = "/bin/true"; ] }; ]"""
    report = validate(jdl(text))
    assert [p.message for p in report.errors] == ["Duplicated NodeName(a)"]


def test_collection_needs_a_list_of_nodes() -> None:
    report = validate(jdl('[ Type = "collection"; nodes = [ a = 1 ]; ]'))
    assert "non-empty list" in report.errors[0].message


def test_dag_unknown_dependency_and_node_shape() -> None:
    text = """[ Type = "dag";
      nodes = [
        a = [ description = [ Executable = "/bin/true"; ]; ];
        b = [ file = "b.jdl"; description = [ Executable = "/bin/true"; ]; ];
      ];
      dependencies = { {a, c} };
    ]"""
    report = validate(jdl(text))
    assert report.errors[0].message.startswith('dependency {a, c} names node "c"')
    assert report.errors[0].line == 6


def test_dag_node_with_both_file_and_description() -> None:
    text = """[ Type = "dag";
      nodes = [ b = [ file = "b.jdl"; description = [ Executable = "/bin/true"; ]; ]; ];
    ]"""
    report = validate(jdl(text))
    assert report.errors[0].message == (
        "DAG node b needs exactly one of file and description (both given)"
    )


def test_dag_cycle_is_an_error_naming_the_cycle() -> None:
    text = """[ Type = "dag";
      nodes = [
        A = [ description = [ Executable = "/bin/true"; ]; ];
        B = [ description = [ Executable = "/bin/true"; ]; ];
        C = [ description = [ Executable = "/bin/true"; ]; ];
        dependencies = { {A, B}, {B, C}, {C, A} };
      ];
    ]"""
    report = validate(jdl(text))
    assert [p.message for p in report.errors] == ["the dependencies form a cycle: A -> B -> C -> A"]


def test_dag_description_nodes_are_checked() -> None:
    text = """[ Type = "dag";
      nodes = [ a = [ description = [ Executable = "bin/x"; ]; ]; ];
    ]"""
    report = validate(jdl(text))
    assert report.errors[0].message.startswith('node a: Executable = "bin/x"')
    assert report.errors[0].line == 2


def test_nested_compound_node_is_refused() -> None:
    text = """[ Type = "collection"; nodes = {
        [ JobType = "Parametric"; Executable = "/bin/true"; Parameters = 2; ] }; ]"""
    report = validate(jdl(text))
    assert "plain jobs" in report.errors[0].message
