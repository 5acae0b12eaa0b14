"""The agent runs on a bare Python 3.9: syntax, imports, and the zipapp run for real."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pilotwms.agent
from pilotwms.agent import AGENT_VERSION
from pilotwms.agent.zipapp import build_zipapp

AGENT_DIR = Path(pilotwms.agent.__file__).resolve().parent
MODULES = sorted(AGENT_DIR.rglob("*.py"))
PYENV_39 = Path("/root/.pyenv/versions/3.9.18/bin/python3.9")


def python39() -> str | None:
    if PYENV_39.is_file():
        return str(PYENV_39)
    return shutil.which("python3.9")


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_is_python_39_syntax_and_imports_only_the_standard_library(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
    for name in imported_modules(tree):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or name.startswith("pilotwms.agent"), (
            f"{path.name} imports {name}"
        )
    for node in ast.walk(tree):
        # These parse under feature_version=(3, 9) but fail at run time on 3.9.
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert not (node.func.id == "zip" and any(k.arg == "strict" for k in node.keywords))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "dataclass"
        ):
            assert all(k.arg not in ("slots", "kw_only") for k in node.keywords)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) != ("itertools", "pairwise")


def test_zipapp_is_reproducible_and_self_contained(tmp_path: Path) -> None:
    assert build_zipapp(tmp_path / "a.pyz") == AGENT_VERSION
    build_zipapp(tmp_path / "b.pyz")
    assert (tmp_path / "a.pyz").read_bytes() == (tmp_path / "b.pyz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.pyz") as archive:
        names = archive.namelist()
        init = archive.read("pilotwms/__init__.py").decode()
    assert "__main__.py" in names and "pilotwms/agent/pilot.py" in names
    assert all(n.startswith(("pilotwms/agent/", "pilotwms/__init__", "__main__")) for n in names)
    assert "import" not in init


def test_zipapp_runs_on_python_39(tmp_path: Path) -> None:
    interpreter = python39()
    if interpreter is None:
        pytest.skip(reason="no Python 3.9 interpreter (python3.9 on PATH or pyenv 3.9.18)")
    app = tmp_path / "agent.pyz"
    build_zipapp(app)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    helped = subprocess.run(
        [interpreter, str(app), "--help"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "--server" in helped.stdout and "--wait-term" in helped.stdout
    described = subprocess.run(
        [interpreter, "-I", str(app), "--describe", "--site", "S", "--queue", "Q",
         "--work-dir", str(tmp_path / "w"), "--tags", "MPI-START"],
        check=False, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    ad = json.loads(described.stdout)
    assert ad["PythonVersion"].startswith("3.9.")
    assert ad["GlueCEUniqueID"].endswith(":pilotwms/S-Q")
    assert ad["GlueHostApplicationSoftwareRunTimeEnvironment"] == ["MPI-START"]
    assert ad["Cpus"] >= 1 and ad["PilotVersion"] == AGENT_VERSION
    version = subprocess.run(
        [interpreter, str(app), "--version"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert version.stdout.strip() == AGENT_VERSION
    missing = subprocess.run(
        [interpreter, str(app), "--server", "http://127.0.0.1:9"],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "--token" in missing.stderr
