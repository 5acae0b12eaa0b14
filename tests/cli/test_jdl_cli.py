"""``pilotwms jdl check|expand`` and ``pilotwms classad eval``: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pilotwms.cli import classad as classad_cli
from pilotwms.cli import jdl as jdl_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CORPUS = ROOT / ".." / "shared" / "jdl-corpus"

runner = CliRunner()

# The two sub-applications mounted as pilotwms.cli.main mounts them; the real entry point is
# exercised as a process in test_installed_command_runs_as_a_process.
app = typer.Typer()
app.add_typer(jdl_cli.app, name="jdl")
app.add_typer(classad_cli.app, name="classad")


def corpus(name: str) -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"JDL corpus not found at {CORPUS.resolve()} (shared/ beside the clone)")
    (path,) = CORPUS.glob(f"{name}-*.jdl")
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_check_valid_files_exit_0() -> None:
    files = [str(p) for p in sorted(EXAMPLES.glob("*.jdl"))]
    assert len(files) >= 5
    code, out = run("jdl", "check", *files)
    assert code == 0, out
    assert f"{EXAMPLES / 'parametric.jdl'}: OK, parametric, 5 nodes" in out
    assert f"{EXAMPLES / 'dag.jdl'}: OK, dag, 4 nodes" in out
    assert "\x1b[" not in out  # no colours when not a terminal


def test_check_invalid_file_prints_location_caret_and_hint(tmp_path: Path) -> None:
    path = tmp_path / "bad.jdl"
    path.write_text('Executable = "run.sh";\nRetryCount = -2;\nStdOuput = "o";\n')
    code, out = run("jdl", "check", str(path))
    assert code == 1
    lines = out.splitlines()
    i = lines.index(
        f'{path}:1:1: error: Executable = "run.sh" is neither an absolute path nor a file of '
        "the InputSandbox"
    )
    assert lines[i + 1] == 'Executable = "run.sh";'
    assert lines[i + 2] == "^"
    assert lines[i + 3].startswith("    hint: ")
    assert f"{path}:2:1: error: RetryCount = -2: value cannot be less than 0" in out
    assert f"{path}:3:1: warning: StdOuput: did you mean StdOutput?" in out
    assert out.rstrip().endswith(f"{path}: invalid: 2 errors, 1 warning")


def test_check_syntax_error_points_at_the_fault() -> None:
    code, out = run("jdl", "check", str(corpus("049")))
    assert code == 1
    assert f"{corpus('049')}:10:1: error: syntax error: " in out
    assert "Rank = 0;\n^\n" in out


def test_check_json_for_several_files() -> None:
    code, out = run("jdl", "check", "--json", str(corpus("002")), str(corpus("026")))
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    first, second = data["files"]
    assert first["ok"] is False and first["errors"][0]["attribute"] == "Executable"
    assert second["ok"] is True and second["kind"] == "job"
    assert second["warnings"][0]["message"] == "ShallowRewtryCount: did you mean ShallowRetryCount?"
    assert (second["warnings"][0]["line"], second["warnings"][0]["column"]) == (5, 1)


def test_check_reports_missing_node_files_as_errors() -> None:
    code, out = run("jdl", "check", "--json", str(corpus("017")))
    assert code == 1
    error = json.loads(out)["files"][0]["errors"][0]
    assert 'file "data/example.jdl" not found' in error["message"]
    assert (error["line"], error["column"], error["node"]) == (7, 9, "nodeA")


def test_check_dirac_dialect_option() -> None:
    path = str(corpus("073"))
    assert run("jdl", "check", path)[0] == 0
    code, out = run("jdl", "check", "--dialect", "glite", path)
    assert code == 1
    assert "unquoted word std.err" in out


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("jdl", "check", str(tmp_path / "missing.jdl"))[0] == 2
    assert run("jdl", "check", "--bogus", str(corpus("001")))[0] == 2
    assert run("jdl", "check", "--dialect", "cobol", str(corpus("001")))[0] == 2
    assert run("jdl", "expand")[0] == 2


def test_expand_parametric_as_jdl() -> None:
    code, out = run("jdl", "expand", str(corpus("039")))
    assert code == 0, out
    assert out.splitlines()[0] == "# parametric: 5 jobs"
    assert "# node Node_8" in out
    assert 'StdOutput = "echo8.out"' in out


def test_expand_dag_json_has_kind_nodes_edges() -> None:
    code, out = run("jdl", "expand", "--json", str(EXAMPLES / "dag.jdl"))
    assert code == 0, out
    data = json.loads(out)
    assert data["kind"] == "dag"
    assert data["max_nodes_running"] == 2
    assert [n["name"] for n in data["nodes"]] == ["A", "B", "C", "D"]
    assert sorted(map(tuple, data["edges"])) == [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]


def test_expand_collection_reads_file_nodes_next_to_the_jdl() -> None:
    code, out = run("jdl", "expand", "--json", str(EXAMPLES / "collection.jdl"))
    assert code == 0, out
    names = [n["name"] for n in json.loads(out)["nodes"]]
    assert names == ["english", "date", "uname"]


def test_expand_no_defaults() -> None:
    code, out = run("jdl", "expand", "--no-defaults", str(corpus("004")))
    assert code == 0
    assert out.splitlines()[1] == '[ Executable = "/bin/true" ]'


def test_expand_errors_exit_1() -> None:
    code, out = run("jdl", "expand", str(corpus("002")))
    assert code == 1 and "Executable is missing" in out
    code, out = run("jdl", "expand", "--json", str(corpus("074")))
    assert code == 1
    assert json.loads(out)["error"]["line"] == 4
    code, out = run("jdl", "expand", str(corpus("024")))
    assert code == 1 and 'file "test_dag.jdl" not found' in out


EVAL = [
    (["1 + 2"], "3"),
    (['strcat("a", "b")'], '"ab"'),
    (["{1, 2}"], "{ 1, 2 }"),
    (["x"], "undefined"),
    (['1 + "a"'], "error"),
    (["Cpus * 2", "--my", "[Cpus = 4]"], "8"),
    (["other.Cpus >= my.Need", "--my", "Need = 2;", "--target", "[ Cpus = 4 ]"], "true"),
]


@pytest.mark.parametrize(("args", "expected"), EVAL)
def test_classad_eval(args: list[str], expected: str) -> None:
    code, out = run("classad", "eval", *args)
    assert code == 0, out
    assert out.strip() == expected


def test_classad_eval_target_from_file_and_json(tmp_path: Path) -> None:
    slot = tmp_path / "slot.ad"
    slot.write_text('[ GlueHostApplicationSoftwareRunTimeEnvironment = {"pilotwms-demo"} ]')
    expr = 'Member("pilotwms-demo", other.GlueHostApplicationSoftwareRunTimeEnvironment)'
    assert run("classad", "eval", expr, "--target", f"@{slot}") == (0, "true\n")
    code, out = run("classad", "eval", "--json", "[a = {1, x}]")
    assert code == 0
    assert json.loads(out) == {"a": [1, {"undefined": True}]}


def test_classad_eval_errors() -> None:
    code, out = run("classad", "eval", "1 +")
    assert code == 1
    assert out.startswith("EXPR:1:")
    assert "^" in out
    code, out = run("classad", "eval", "1", "--my", "[a = ]")
    assert code == 1 and out.startswith("--my:1:")
    assert run("classad", "eval", "1", "--my", "@/nonexistent/file.ad")[0] == 2


def test_installed_command_runs_as_a_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pilotwms.cli.main", "jdl", "check", str(corpus("002"))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "mandatory attribute Executable is missing" in result.stdout
