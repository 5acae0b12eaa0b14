"""``pilotwms jdl``: check and expand JDL files locally, without a server.

Exit codes (documented for scripts and CI):

- 0: every file is valid (warnings do not fail a check);
- 1: at least one file is invalid (syntax error, validation error, expansion error);
- 2: usage error (unknown option, missing or unreadable file).

Output is plain text without colours when stdout is not a terminal; ``--json`` prints one JSON
document for tools.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from pilotwms.jdl import (
    Defaults,
    JDLExpansionError,
    JDLSyntaxError,
    Problem,
    expand,
    parse_jdl,
    validate,
)
from pilotwms.jdl.errors import caret_lines

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="jdl",
    help="Check and expand gLite JDL files (exit 0 valid, 1 invalid, 2 usage error).",
    no_args_is_help=True,
)

FILES = typer.Argument(..., help="JDL files to check.", exists=True, dir_okay=False, readable=True)
FILE = typer.Argument(..., help="The JDL file.", exists=True, dir_okay=False, readable=True)
JSON = typer.Option(False, "--json", help="Print one JSON document instead of text.")
DIALECT = typer.Option(
    "auto", "--dialect", help="How to read the JDL: auto, glite or dirac (DIRAC's JDL)."
)


def _console() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from exc


def _source_line(lines: list[str], line: int) -> str:
    return lines[line - 1] if 1 <= line <= len(lines) else ""


def _print_problem(console: Console, name: str, lines: list[str], problem: Problem) -> None:
    style = "bold red" if problem.severity == "error" else "yellow"
    where = f"{name}:{problem.line}:{problem.column}"
    console.print(
        f"{escape(where)}: [{style}]{problem.severity}[/{style}]: {escape(problem.message)}"
    )
    shown = caret_lines(_source_line(lines, problem.line), problem.column)
    if shown:
        console.print(escape(shown))
    if problem.hint:
        console.print(f"    hint: {escape(problem.hint)}")


def _expansion_problem(exc: JDLExpansionError) -> Problem:
    return Problem(None, exc.line, exc.column, exc.message, "", "error", exc.node)


def _check_file(path: Path, dialect: str) -> dict[str, Any]:
    """Parse, validate and expand one file; the result as a JSON-ready dict."""
    text = _read(path)
    result: dict[str, Any] = {"file": str(path), "ok": False, "errors": [], "warnings": []}
    try:
        ad = parse_jdl(text, str(path))
    except JDLSyntaxError as exc:
        result["syntax_error"] = exc.to_dict()
        result["errors"] = [
            Problem(None, exc.line, exc.column, f"syntax error: {exc.message}").to_dict()
        ]
        return result
    report = validate(ad, dialect=dialect)
    errors = list(report.errors)
    if not errors:
        try:
            expansion = expand(ad, base_dir=path.parent)
            result["kind"] = expansion.kind
            result["nodes"] = len(expansion.nodes)
        except JDLExpansionError as exc:
            errors.append(_expansion_problem(exc))
    result["dialect"] = report.dialect
    result["errors"] = [p.to_dict() for p in errors]
    result["warnings"] = [p.to_dict() for p in report.warnings]
    result["ok"] = not errors
    return result


def _as_problem(d: dict[str, Any]) -> Problem:
    return Problem(
        d.get("attribute"),
        int(d.get("line") or 0),
        int(d.get("column") or 0),
        str(d.get("message")),
        str(d.get("hint") or ""),
        str(d.get("severity") or "error"),
        d.get("node"),
    )


@app.command("check")
def check_command(
    files: list[Path] = FILES,
    as_json: bool = JSON,
    dialect: str = DIALECT,
) -> None:
    """Validate JDL files: every error and warning with file:line:column and a caret."""
    if dialect not in ("auto", "glite", "dirac"):
        raise typer.BadParameter("must be auto, glite or dirac", param_hint="--dialect")
    results = [_check_file(path, dialect) for path in files]
    all_ok = all(r["ok"] for r in results)
    if as_json:
        sys.stdout.write(json.dumps({"ok": all_ok, "files": results}, indent=2) + "\n")
    else:
        console = _console()
        for result in results:
            name = result["file"]
            lines = _read(Path(name)).splitlines()
            problems = [_as_problem(d) for d in [*result["errors"], *result["warnings"]]]
            problems.sort(key=lambda p: (p.line or 10**9, p.column))
            for problem in problems:
                _print_problem(console, name, lines, problem)
            n_err, n_warn = len(result["errors"]), len(result["warnings"])
            if result["ok"]:
                extra = f" ({n_warn} warning{'s' if n_warn != 1 else ''})" if n_warn else ""
                detail = f", {result.get('kind', 'job')}" if result.get("kind") else ""
                if result.get("nodes", 1) != 1 or result.get("kind") not in (None, "job"):
                    detail += f", {result['nodes']} node{'s' if result['nodes'] != 1 else ''}"
                console.print(f"{escape(name)}: [green]OK[/green]{escape(detail)}{extra}")
            else:
                console.print(
                    f"{escape(name)}: [bold red]invalid[/bold red]: {n_err} error"
                    f"{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}"
                )
    raise typer.Exit(EXIT_OK if all_ok else EXIT_INVALID)


@app.command("expand")
def expand_command(
    file: Path = FILE,
    as_json: bool = JSON,
    no_defaults: bool = typer.Option(
        False, "--no-defaults", help="Do not add the default Requirements, Rank and retries."
    ),
) -> None:
    """Print the concrete jobs of a JDL (one for a normal job; the nodes of a compound one)."""
    console = _console()
    text = _read(file)
    lines = text.splitlines()
    try:
        ad = parse_jdl(text, str(file))
    except JDLSyntaxError as exc:
        if as_json:
            sys.stdout.write(json.dumps({"ok": False, "error": exc.to_dict()}, indent=2) + "\n")
        else:
            console.print(escape(str(exc)))
        raise typer.Exit(EXIT_INVALID) from None
    report = validate(ad)
    defaults = Defaults(None, None, None, None) if no_defaults else Defaults()
    error: dict[str, Any] | None = None
    if report.errors:
        error = {"type": "JDLValidationError", "problems": [p.to_dict() for p in report.errors]}
    else:
        try:
            expansion = expand(ad, base_dir=file.parent, defaults=defaults)
        except JDLExpansionError as exc:
            error = exc.to_dict()
    if error is not None:
        if as_json:
            sys.stdout.write(json.dumps({"ok": False, "error": error}, indent=2) + "\n")
        else:
            problems = report.errors or [_as_problem({**error, "severity": "error"})]
            for problem in problems:
                _print_problem(console, str(file), lines, problem)
        raise typer.Exit(EXIT_INVALID)
    if as_json:
        sys.stdout.write(json.dumps({"ok": True, **expansion.to_dict()}, indent=2) + "\n")
        raise typer.Exit(EXIT_OK)
    header = (
        f"# {expansion.kind}: {len(expansion.nodes)} job{'s' if len(expansion.nodes) != 1 else ''}"
    )
    if expansion.max_nodes_running is not None:
        header += f", at most {expansion.max_nodes_running} running"
    console.print(escape(header))
    for node in expansion.nodes:
        if node.name is not None:
            parents = f" (after {', '.join(node.parents)})" if node.parents else ""
            console.print(escape(f"# node {node.name}{parents}"))
        console.print(escape(node.jdl))
    raise typer.Exit(EXIT_OK)
