"""The real JDL corpus (``shared/jdl-corpus``, 80 files): what gLite would accept and generate.

Expected outcome per file, decided from gLite's rules (``glite-jdl.md`` and jdl-api-cpp):

| file | expected outcome (why) |
|---|---|
| 002 | invalid: Executable missing (its Executable line is commented out) |
| 022 | invalid: StdInput "input.txt" is not in the InputSandbox (WM-internal ad; WMProxy's |
|     | server-side JobAd::checkSemantic refuses it the same way) |
| 031 | invalid: node Node_0 has its own InputSandbox, which replaces the collection's |
|     | (inherited only when absent), and Executable "Test.sh" is not in it |
| 049 | syntax error at 10:1 (missing ";" after Requirements, as published) |
| 074 | syntax error at 4:17 (DIRAC template placeholder %(InputData)s) |
| 076 | rejected: declares nodeB twice and depends on nodeC, never declared |
| 016, 017, 024, 029, 030 | valid; expansion fails naming the node file, absent from the corpus |
|     | (data/example.jdl, test_dag.jdl, data/test35250.jdl); with the file supplied (a copy |
|     | of corpus 047/048) they expand (tests below) |
| 007, 039, 041, 062, 069 | parametric: 2, 5, 1, 4, 5 nodes (_PARAM_ values below) |
| 014, 028, 061 | collection: 3, 20, 3 inline nodes |
| 023 | dag: 3 nodes, nodeA -> nodeB -> nodeC |
| 070-073, 078-080 | valid single jobs read in DIRAC's dialect (warnings; 078/079 warn that |
|     | DIRAC's %s/%n placeholders are not expanded) |
| every other file | valid single job |
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from jdl_helpers import corpus_dir, corpus_file

from pilotwms.jdl import (
    JDLExpansionError,
    JDLSyntaxError,
    expand,
    load_jdl,
    validate,
)

INVALID = {
    "002": "mandatory attribute Executable is missing",
    "022": 'stdinput = "input.txt" is neither an absolute path nor a file of the InputSandbox',
    "031": 'node Node_0: Executable = "Test.sh" is neither an absolute path',
}
SYNTAX = {"049": (10, 1), "074": (4, 17)}
MISSING_NODE_FILE = {
    "016": "data/example.jdl",
    "017": "data/example.jdl",
    "024": "test_dag.jdl",
    "029": "data/test35250.jdl",
    "030": "data/example.jdl",
}
PARAMETRIC = {
    "007": ["Node_test", "Node_2"],
    "039": ["Node_0", "Node_2", "Node_4", "Node_6", "Node_8"],
    "041": ["Node_0"],
    "062": ["Node_0", "Node_2", "Node_4", "Node_6"],
    "069": [f"Node_{i}" for i in range(5)],
}
COLLECTION = {
    "014": ["first", "second", "third"],
    "028": [f"Node_{i}" for i in range(20)],
    "061": ["node1", "node2", "node3"],
}
DAG = {"023": ["nodeA", "nodeB", "nodeC"]}
DIRAC = {"070", "071", "072", "073", "078", "079", "080"}
WARNED = {
    "020": "OutputSandbox has an empty entry",
    "026": "ShallowRewtryCount: did you mean ShallowRetryCount?",
    "069": "no attribute uses _PARAM_",
    "078": "does not expand %s/%n placeholders",
    "079": "does not expand %s/%n placeholders",
    "080": "InputData needs DataAccessProtocol",
}
SPECIAL = set(INVALID) | set(SYNTAX) | set(MISSING_NODE_FILE) | {"076"}
NUMBERS = [f"{i:03d}" for i in range(1, 81)]


def test_corpus_has_80_files() -> None:
    assert len(sorted(corpus_dir().glob("*.jdl"))) == 80


@pytest.mark.parametrize("number", NUMBERS)
def test_every_accepted_file_parses_validates_and_expands(number: str) -> None:
    path = corpus_file(number)
    if number in SYNTAX:
        with pytest.raises(JDLSyntaxError):
            load_jdl(path)
        return
    if number == "076":
        return  # see test_076_is_rejected
    ad = load_jdl(path)
    report = validate(ad)
    if number in INVALID:
        assert [p.message for p in report.errors] and any(
            INVALID[number] in p.message for p in report.errors
        ), report.errors
        assert len(report.errors) == 1
        return
    assert report.errors == [], report.errors
    assert report.dialect == ("dirac" if number in DIRAC else "glite")
    if number in WARNED:
        assert any(WARNED[number] in w.message for w in report.warnings), report.warnings
    if number in MISSING_NODE_FILE:
        with pytest.raises(JDLExpansionError) as info:
            expand(ad, base_dir=path.parent)
        assert f'file "{MISSING_NODE_FILE[number]}" not found' in info.value.message
        return
    expansion = expand(ad, base_dir=path.parent)
    names = [n.name for n in expansion.nodes]
    if number in PARAMETRIC:
        assert (expansion.kind, names) == ("parametric", PARAMETRIC[number])
    elif number in COLLECTION:
        assert (expansion.kind, names) == ("collection", COLLECTION[number])
    elif number in DAG:
        assert (expansion.kind, names) == ("dag", DAG[number])
    else:
        assert (expansion.kind, names) == ("job", [None])
    for node in expansion.nodes:
        assert node.ad is not None  # every generated JDL parses again


@pytest.mark.parametrize(("number", "where"), sorted(SYNTAX.items()))
def test_known_broken_files_point_at_the_fault(number: str, where: tuple[int, int]) -> None:
    with pytest.raises(JDLSyntaxError) as info:
        load_jdl(corpus_file(number))
    error = info.value
    assert (error.line, error.column) == where
    shown = str(error).splitlines()
    assert shown[0].startswith(f"{corpus_file(number)}:{where[0]}:{where[1]}: ")
    assert shown[1] == error.source_line
    assert shown[2] == " " * (where[1] - 1) + "^"


def test_049_fault_is_the_attribute_after_the_missing_semicolon() -> None:
    with pytest.raises(JDLSyntaxError) as info:
        load_jdl(corpus_file("049"))
    assert info.value.source_line.startswith("Rank = 0;")


def test_074_fault_is_the_python_placeholder() -> None:
    with pytest.raises(JDLSyntaxError) as info:
        load_jdl(corpus_file("074"))
    error = info.value
    assert error.source_line[error.column - 1 :].startswith("%(InputData)s")


def test_076_is_rejected() -> None:
    """The WMS guide's DAG declares nodeB twice and depends on nodeC, which it never declares.

    A parser that refuses duplicate attributes in nested records stops at the second nodeB
    (12:6); one that keeps the last definition lets validation report the unknown nodeC.
    """
    path = corpus_file("076")
    try:
        ad = load_jdl(path)
    except JDLSyntaxError as error:
        assert (error.line, error.column) == (12, 6)
        return
    report = validate(ad)
    assert any('"nodeC", which is not in nodes' in p.message for p in report.errors)
    with pytest.raises(JDLExpansionError, match="nodeC"):
        expand(ad, base_dir=path.parent)


# Parametric ---------------------------------------------------------------------------------


def test_039_param_takes_0_2_4_6_8() -> None:
    nodes = expand(load_jdl(corpus_file("039"))).nodes
    assert [n.ad.evaluate("StdOutput") for n in nodes] == [f"echo{v}.out" for v in (0, 2, 4, 6, 8)]
    first = nodes[0].ad
    assert first.evaluate("Environment") == [
        "MYPATH0=$PATH:/bin:/usr/bin:$HOME",
        "ParameterValue=0",
    ]
    assert first.evaluate("OutputSandbox") == ["echo0.out", "echo0.err"]
    for gone in ("Parameters", "ParameterStart", "ParameterStep", "JobType"):
        assert gone not in first


def test_007_list_parameters_keep_unquoted_words() -> None:
    nodes = expand(load_jdl(corpus_file("007"))).nodes
    assert [n.ad.evaluate("StdError") for n in nodes] == ["echotest.err", "echo2.err"]


def test_041_param_in_input_sandbox_paths() -> None:
    (node,) = expand(load_jdl(corpus_file("041"))).nodes
    assert node.ad.evaluate("InputSandbox") == ["data/79141/Src0/Makefile", "data/79141/Test0"]


def test_062_param_in_arguments_and_sandbox() -> None:
    nodes = expand(load_jdl(corpus_file("062"))).nodes
    assert [n.ad.evaluate("Arguments") for n in nodes] == [f"message{v}.sh" for v in (0, 2, 4, 6)]
    assert nodes[3].ad.evaluate("InputSandbox") == "message6.sh"


# Collections --------------------------------------------------------------------------------


def test_014_nodes_inherit_from_the_collection() -> None:
    nodes = expand(load_jdl(corpus_file("014"))).nodes
    for node in nodes:
        ad = node.ad
        assert ad.evaluate("FuzzyRank") is True
        assert ad.evaluate("VirtualOrganisation") == "dteam"
        assert ad.evaluate("RetryCount") == 17  # DefaultNodeRetryCount
        assert ad.evaluate("ShallowRetryCount") == 13  # DefaultNodeShallowRetryCount
        assert ad.evaluate("NodeName") == node.name
        assert "nodes" not in ad


def test_028_twenty_nodes_share_the_collection_sandbox_and_retries() -> None:
    nodes = expand(load_jdl(corpus_file("028"))).nodes
    assert len(nodes) == 20
    for node in nodes:
        ad = node.ad
        assert ad.evaluate("InputSandbox") == ["data/Test.sh"]
        assert (ad.evaluate("RetryCount"), ad.evaluate("ShallowRetryCount")) == (1, 2)
        assert ad.evaluate("Requirements") is False


def test_061_root_input_sandbox_references_are_resolved() -> None:
    nodes = {n.name: n.ad for n in expand(load_jdl(corpus_file("061"))).nodes}
    assert nodes["node1"].evaluate("InputSandbox") == ["script_node1.sh", "input_common1.txt"]
    assert nodes["node2"].evaluate("InputSandbox") == ["script_node2.sh", "input_common2.txt"]
    assert nodes["node3"].evaluate("InputSandbox") == ["input_common1.txt", "input_common2.txt"]
    assert nodes["node1"].evaluate("ShallowRetryCount") == 1


# File nodes, resolved relative to the JDL's directory ----------------------------------------


def _with_node_files(tmp_path: Path, number: str, files: dict[str, str]) -> Path:
    """Copy corpus file ``number`` into ``tmp_path`` with its node files (from the corpus)."""
    target = tmp_path / corpus_file(number).name
    shutil.copy(corpus_file(number), target)
    for relative, source in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus_file(source), tmp_path / relative)
    return target


def test_016_file_nodes_with_their_files_present(tmp_path: Path) -> None:
    path = _with_node_files(tmp_path, "016", {"data/example.jdl": "048"})
    expansion = expand(load_jdl(path), base_dir=tmp_path)
    assert expansion.kind == "collection"
    assert [n.name for n in expansion.nodes] == [f"Node_{i}" for i in range(5)]
    assert {n.ad.evaluate("Executable") for n in expansion.nodes} == {"/usr/bin/env"}
    assert {n.ad.evaluate("VirtualOrganisation") for n in expansion.nodes} == {"dteam"}


def test_017_dag_mixes_file_and_description_nodes(tmp_path: Path) -> None:
    path = _with_node_files(tmp_path, "017", {"data/example.jdl": "048"})
    expansion = expand(load_jdl(path), base_dir=tmp_path)
    assert [n.name for n in expansion.nodes] == ["nodeA", "nodeB", "nodeC"]
    assert expansion.edges == [("nodeA", "nodeB"), ("nodeA", "nodeC")]
    nodes = {n.name: n for n in expansion.nodes}
    assert nodes["nodeA"].ad.evaluate("Executable") == "/usr/bin/env"
    assert nodes["nodeC"].ad.evaluate("Executable") == "/bin/echo"
    assert nodes["nodeC"].parents == ("nodeA",)
    assert nodes["nodeB"].ad.evaluate("ShallowRetryCount") == 3


def test_024_max_nodes_running_and_chain(tmp_path: Path) -> None:
    path = _with_node_files(tmp_path, "024", {"test_dag.jdl": "048"})
    expansion = expand(load_jdl(path), base_dir=tmp_path)
    assert expansion.max_nodes_running == 10
    assert expansion.edges == [("nodeA", "nodeB"), ("nodeB", "nodeC")]


def test_029_nodes_keep_their_own_retry_count(tmp_path: Path) -> None:
    path = _with_node_files(tmp_path, "029", {"data/test35250.jdl": "047"})
    nodes = expand(load_jdl(path), base_dir=tmp_path).nodes
    for node in nodes:
        assert node.ad.evaluate("RetryCount") == 0  # the node file's own
        assert node.ad.evaluate("ShallowRetryCount") == 1  # DefaultNodeShallowRetryCount
        assert node.ad.evaluate("InputSandbox") == ["data/Test35250.sh"]


def test_missing_node_file_error_names_file_and_place() -> None:
    corpus = corpus_dir()
    path = corpus_file("017")
    with pytest.raises(JDLExpansionError) as info:
        expand(load_jdl(path), base_dir=corpus)
    error = info.value
    assert error.node == "nodeA"
    assert (error.line, error.column) == (7, 9)
    assert str(corpus / "data" / "example.jdl") in error.message
