"""Expansion of the four forms, as tables, and the 10,000-node parametric job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from jdl_helpers import jdl

from pilotwms.jdl import Defaults, JDLExpansionError, expand
from pilotwms.jdl.expansion import kind_of

PARAMETRIC = [
    ("integer", "Parameters = 3;", ["0", "1", "2"]),
    (
        "integer with start and step",
        "Parameters = 10; ParameterStart = 1; ParameterStep = 3;",
        ["1", "4", "7"],
    ),
    ("list of strings", 'Parameters = {"a", "b"};', ["a", "b"]),
    ("list with unquoted word and int", "Parameters = {test, 2};", ["test", "2"]),
    (
        "list indexed by start and step",
        'Parameters = {"a", "b", "c", "d"}; ParameterStart = 1; ParameterStep = 2;',
        ["b", "d"],
    ),
    ("nested lists are flattened", 'Parameters = {{"a", "b"}, "c"};', ["a", "b", "c"]),
]


@pytest.mark.parametrize(
    ("params", "values"), [p[1:] for p in PARAMETRIC], ids=[p[0] for p in PARAMETRIC]
)
def test_parametric_values(params: str, values: list[str]) -> None:
    ad = jdl(f'JobType = "Parametric"; Executable = "/bin/echo"; Arguments = "v=_PARAM_"; {params}')
    expansion = expand(ad)
    assert expansion.kind == "parametric"
    assert [n.name for n in expansion.nodes] == [f"Node_{v}" for v in values]
    assert [n.ad.evaluate("Arguments") for n in expansion.nodes] == [f"v={v}" for v in values]
    assert expansion.nodes[0].ad.evaluate("Environment") == [f"ParameterValue={values[0]}"]
    assert expansion.edges == []


def test_parametric_substitution_is_textual_everywhere() -> None:
    ad = jdl(
        'JobType = {"Parametric"}; Executable = "run_PARAM_.sh"; Parameters = {"x"};\n'
        'InputSandbox = {"d/_PARAM_/run_PARAM_.sh"}; Environment = {"A=_PARAM_"};\n'
        'Requirements = other.Slot == "_PARAM_";'
    )
    (node,) = expand(ad, defaults=Defaults(None, None, None, None)).nodes
    node_ad = node.ad
    assert node_ad.evaluate("Executable") == "runx.sh"
    assert node_ad.evaluate("InputSandbox") == ["d/x/runx.sh"]
    assert node_ad.evaluate("Environment") == ["A=x", "ParameterValue=x"]
    assert 'other.Slot == "x"' in node.jdl
    assert "JobType" not in node_ad


def test_parametric_node_names_are_sanitised() -> None:
    ad = jdl(
        'JobType = "Parametric"; Executable = "/bin/echo"; Parameters = {"a.b", "c/d", "e*", "$f"};'
    )
    assert [n.name for n in expand(ad).nodes] == ["Node_a_b", "Node_cId", "Node_e-", "Node__S_f"]


PARAMETRIC_ERRORS = [
    (
        "step zero",
        "Parameters = 3; ParameterStep = 0;",
        "ParameterStep must be different from zero",
    ),
    ("negative step", "Parameters = 3; ParameterStep = -1;", "ParameterStep cannot be negative"),
    ("no parameters", "", "needs Parameters"),
    ("zero parameters", "Parameters = 0;", "must be greater than 0"),
    ("string parameters", 'Parameters = "a";', "must be an integer or a list"),
    ("start beyond", "Parameters = 2; ParameterStart = 5;", "no node to generate"),
    ("duplicate values", 'Parameters = {"a", "a"};', "Duplicated NodeName(Node_a)"),
    ("duplicate after sanitising", 'Parameters = {"a.b", "a_b"};', "Duplicated NodeName"),
    ("quote in value", 'Parameters = {"a\\"b"};', "contains a quote"),
]


@pytest.mark.parametrize(
    ("params", "message"), [p[1:] for p in PARAMETRIC_ERRORS], ids=[p[0] for p in PARAMETRIC_ERRORS]
)
def test_parametric_errors(params: str, message: str) -> None:
    ad = jdl(f'JobType = "Parametric"; Executable = "/bin/echo"; {params}')
    with pytest.raises(JDLExpansionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expand(ad)


def test_ten_thousand_node_parametric_job_is_expanded_without_parsing_nodes() -> None:
    ad = jdl(
        'JobType = "Parametric"; Executable = "/bin/sh"; Arguments = "run.sh _PARAM_";\n'
        'InputSandbox = {"run.sh"}; StdOutput = "out_PARAM_.txt";\n'
        'OutputSandbox = {"out_PARAM_.txt"}; Parameters = 10000;'
    )
    started = time.perf_counter()
    expansion = expand(ad)
    elapsed = time.perf_counter() - started
    assert len(expansion.nodes) == 10000
    assert expansion.nodes[-1].name == "Node_9999"
    assert all(n._ad is None for n in expansion.nodes)  # nothing parsed yet
    assert expansion.nodes[1234].ad.evaluate("StdOutput") == "out1234.txt"
    # A generous bound for a shared CI machine; the report measures about 15 ms.
    assert elapsed < 1.0


def test_huge_parametric_job_is_refused_before_making_nodes() -> None:
    ad = jdl('JobType = "Parametric"; Executable = "/bin/echo"; Parameters = 1000000000000;')
    started = time.perf_counter()
    with pytest.raises(JDLExpansionError, match="more than the limit of 100000"):
        expand(ad)
    assert time.perf_counter() - started < 1.0
    small = jdl('JobType = "Parametric"; Executable = "/bin/echo"; Parameters = 10;')
    with pytest.raises(JDLExpansionError, match="would have 5 nodes, more than the limit of 4"):
        expand(
            jdl(
                'JobType = "Parametric"; Executable = "/bin/echo"; Parameters = 10; '
                "ParameterStep = 2;"
            ),
            max_nodes=4,
        )
    assert len(expand(small, max_nodes=10).nodes) == 10


def test_normal_job_is_one_node_named_none_with_defaults() -> None:
    expansion = expand(jdl('Executable = "/bin/true";'))
    assert expansion.kind == "job"
    (node,) = expansion.nodes
    assert node.name is None and node.parents == ()
    assert node.ad.evaluate("RetryCount") == 3
    assert "Requirements" in node.ad


def test_kinds() -> None:
    assert kind_of(jdl('Type = "DAG"; nodes = [];')) == "dag"
    assert kind_of(jdl('Type = "Collection"; nodes = {};')) == "collection"
    assert kind_of(jdl('JobType = "parametric";')) == "parametric"
    assert kind_of(jdl('Type = "job";')) == "job"


# Collections ---------------------------------------------------------------------------------

COLLECTION = """[
  Type = "collection";
  VirtualOrganisation = "vo";
  MyProxyServer = "myproxy.example.org";
  InputSandbox = {"common.txt", "run.sh"};
  OutputSandbox = {"out"};
  Requirements = other.Site == "A";
  RetryCount = 2;
  ShortDeadlineJob = true;
  nodes = {
    [ Executable = "run.sh"; ],
    [ NodeName = "my.node"; Executable = "/bin/true"; MyProxyServer = "other";
      VirtualOrganisation = "mine"; RetryCount = 0; OutputSandbox = {"mine"};
      Requirements = other.Site == "B"; ],
    [ Executable = "/bin/cat"; InputSandbox = {root.InputSandbox[0], "x.txt"}; ]
  };
]"""


def test_collection_inheritance_table() -> None:
    nodes = {n.name: n.ad for n in expand(jdl(COLLECTION), defaults=Defaults(None, None)).nodes}
    assert list(nodes) == ["Node_0", "my_node", "Node_2"]
    plain, own, ref = nodes["Node_0"], nodes["my_node"], nodes["Node_2"]
    # copied when missing
    assert plain.evaluate("InputSandbox") == ["common.txt", "run.sh"]
    assert plain.evaluate("OutputSandbox") == ["out"]
    assert plain.evaluate("RetryCount") == 2
    assert own.evaluate("RetryCount") == 0
    assert own.evaluate("OutputSandbox") == ["mine"]
    # always copied
    assert own.evaluate("ShortDeadlineJob") is True
    # Requirements/Rank to nodes without their own
    assert plain.evaluate("Requirements", jdl('Site = "A";')) is True
    assert own.evaluate("Requirements", jdl('Site = "B";')) is True
    # forced
    assert own.evaluate("MyProxyServer") == "myproxy.example.org"
    assert own.evaluate("VirtualOrganisation") == "vo"
    # root.InputSandbox references
    assert ref.evaluate("InputSandbox") == ["common.txt", "x.txt"]
    assert own.evaluate("NodeName") == "my_node"


def test_collection_file_nodes_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "n.jdl").write_text('Executable = "/bin/date";\nArguments = "-u";\n')
    ad = jdl(
        '[ Type = "collection"; nodes = { [ file = "nodes/n.jdl"; Arguments = "-R"; ],'
        '[ file = "nodes/n.jdl"; NodeName = "second"; ] }; ]'
    )
    expansion = expand(ad, base_dir=tmp_path)
    assert [n.name for n in expansion.nodes] == ["Node_0", "second"]
    assert expansion.nodes[0].ad.evaluate("Arguments") == "-R"
    assert expansion.nodes[1].ad.evaluate("Executable") == "/bin/date"


COLLECTION_ERRORS = [
    ("missing file", '{ [ file = "nope.jdl"; ] }', 'file "nope.jdl" not found'),
    ("file not a string", "{ [ file = 3; ] }", "file must be a string"),
    (
        "duplicate names",
        '{ [ NodeName = "a"; Executable = "/bin/true"; ],'
        ' [ NodeName = "a"; Executable = "/bin/true"; ] }',
        r"Duplicated NodeName\(a\)",
    ),
    ("not records", "{ 1, 2 }", "is not a record"),
    ("empty", "{ }", "non-empty list"),
    (
        "root index out of range",
        '{ [ Executable = "/bin/true"; InputSandbox = {root.InputSandbox[3]}; ] }',
        r"root.InputSandbox\[3\]",
    ),
    ("nested compound", '{ [ Type = "dag"; nodes = []; ] }', "must be plain jobs"),
]


@pytest.mark.parametrize(
    ("nodes", "message"), [c[1:] for c in COLLECTION_ERRORS], ids=[c[0] for c in COLLECTION_ERRORS]
)
def test_collection_errors(tmp_path: Path, nodes: str, message: str) -> None:
    ad = jdl(f'[ Type = "collection"; InputSandbox = {{"a"}}; nodes = {nodes}; ]')
    with pytest.raises(JDLExpansionError, match=message):
        expand(ad, base_dir=tmp_path)


@pytest.mark.parametrize("ref", ["n.jdl", "/etc/passwd", "../../etc/passwd"])
def test_no_file_is_read_without_base_dir(ref: str) -> None:
    ad = jdl(f'[ Type = "collection"; nodes = {{ [ file = "{ref}"; ] }}; ]')
    with pytest.raises(JDLExpansionError, match="no base directory was given"):
        expand(ad)
    dag = jdl(f'[ Type = "dag"; nodes = [ a = [ file = "{ref}"; ]; ]; ]')
    with pytest.raises(JDLExpansionError, match="describe the node inline"):
        expand(dag)


def test_node_file_with_syntax_error_names_file_and_position(tmp_path: Path) -> None:
    (tmp_path / "bad.jdl").write_text('Executable = "/bin/true"\nArguments = "x";\n')
    ad = jdl('[ Type = "collection"; nodes = { [ file = "bad.jdl"; ] }; ]')
    with pytest.raises(JDLExpansionError, match=r"bad.jdl:2:1: "):
        expand(ad, base_dir=tmp_path)


# DAGs ----------------------------------------------------------------------------------------

DIAMOND = """[
  Type = "dag";
  max_nodes_running = 2;
  DefaultNodeRetryCount = 7;
  nodes = [
    RetryCount = 4;
    A = [ description = [ Executable = "/bin/a"; ]; ];
    B = [ description = [ Executable = "/bin/b"; RetryCount = 1; ]; ];
    C = [ node_type = "edg-jdl"; description = [ Executable = "/bin/c"; ]; ];
    D = [ file = "d.jdl"; ];
    %s
  ];
  %s
]"""


@pytest.mark.parametrize(
    ("inside", "outside"),
    [
        ("dependencies = { {A, {B, C}}, {{B, C}, D} };", ""),
        ("", "dependencies = { {A, B}, {A, C}, {B, D}, {C, D} };"),
        ("dependencies = { {A, {B, C}} };", "dependencies = { {{B, C}, D} };"),
    ],
    ids=["inside nodes", "outside nodes", "both"],
)
def test_dag_diamond(tmp_path: Path, inside: str, outside: str) -> None:
    (tmp_path / "d.jdl").write_text('Executable = "/bin/d";')
    expansion = expand(jdl(DIAMOND % (inside, outside)), base_dir=tmp_path)
    assert expansion.kind == "dag"
    assert expansion.max_nodes_running == 2
    assert sorted(expansion.edges) == [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
    nodes = {n.name: n for n in expansion.nodes}
    assert list(nodes) == ["A", "B", "C", "D"]
    assert nodes["A"].parents == ()
    assert nodes["D"].parents == ("B", "C")
    assert nodes["D"].ad.evaluate("Executable") == "/bin/d"
    # RetryCount of the nodes record beats DefaultNodeRetryCount; the node's own beats both
    assert nodes["A"].ad.evaluate("RetryCount") == 4
    assert nodes["B"].ad.evaluate("RetryCount") == 1
    assert nodes["C"].ad.evaluate("NodeName") == "C"


@pytest.mark.parametrize("name", ["max_nodes_running", "Max_nodes_running", "max_running_nodes"])
def test_max_nodes_running_spellings(name: str) -> None:
    ad = jdl(
        f'[ Type = "dag"; {name} = 3; nodes = [ a = [ description = '
        '[ Executable = "/bin/true"; ]; ]; ]; ]'
    )
    assert expand(ad).max_nodes_running == 3


DAG_ERRORS = [
    ("cycle", "{ {A, B}, {B, C}, {C, A} }", "the dependencies form a cycle: A -> B -> C -> A"),
    ("self", "{ {A, A} }", "cycle: A -> A"),
    ("unknown node", "{ {A, X} }", 'names node "X", which is not in nodes'),
    ("bad pair", "{ {A, B, C} }", "is a {parent, child} pair"),
]


@pytest.mark.parametrize(
    ("deps", "message"), [d[1:] for d in DAG_ERRORS], ids=[d[0] for d in DAG_ERRORS]
)
def test_dag_errors(deps: str, message: str) -> None:
    text = (
        '[ Type = "dag"; nodes = [ A = [ description = [ Executable = "/bin/a"; ]; ];\n'
        ' B = [ description = [ Executable = "/bin/b"; ]; ];\n'
        ' C = [ description = [ Executable = "/bin/c"; ]; ]; ];\n'
        f" dependencies = {deps}; ]"
    )
    with pytest.raises(JDLExpansionError) as info:
        expand(jdl(text))
    assert message in info.value.message
    assert info.value.line in (1, 4)


def test_dag_node_shape_errors() -> None:
    with pytest.raises(JDLExpansionError, match="neither given"):
        expand(jdl('[ Type = "dag"; nodes = [ A = [ node_type = "edg-jdl"; ]; ]; ]'))
    with pytest.raises(JDLExpansionError, match="must be a record"):
        expand(jdl('[ Type = "dag"; nodes = [ A = 3; ]; ]'))
    with pytest.raises(JDLExpansionError, match="has to be an integer > 0"):
        expand(
            jdl(
                '[ Type = "dag"; max_nodes_running = 0; nodes = [ A = [ description = '
                '[ Executable = "/bin/a"; ]; ]; ]; ]'
            )
        )
    with pytest.raises(JDLExpansionError, match="at least one node"):
        expand(jdl('[ Type = "dag"; nodes = [ ]; ]'))


def test_expansion_to_dict_is_json_ready() -> None:
    import json

    ad = jdl(
        '[ Type = "dag"; nodes = [ A = [ description = [ Executable = "/bin/a"; ]; ];'
        ' B = [ description = [ Executable = "/bin/b"; ]; ]; dependencies = {A, B}; ]; ]'
    )
    data = json.loads(json.dumps(expand(ad).to_dict()))
    assert data["kind"] == "dag"
    assert data["edges"] == [["A", "B"]]
    assert [n["parents"] for n in data["nodes"]] == [[], ["A"]]
