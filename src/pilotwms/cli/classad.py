"""``pilotwms classad``: evaluate ClassAd expressions, as the matcher would.

``pilotwms classad eval 'other.Cpus >= 2' --target '[Cpus = 4]'`` prints ``true``. ``--my`` is
the ad the expression belongs to (unscoped names and ``my.``), ``--target`` the counterpart
(``other.``/``target.``). An ad is given inline (``[a = 1]`` or ``a = 1; b = 2``) or read from a
file with ``@path``.

Exit codes: 0 evaluated (whatever the value, UNDEFINED and ERROR included), 1 syntax error in the
expression or an ad, 2 usage error (unknown option, unreadable ``@file``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from pilotwms.classad import (
    ERROR,
    UNDEFINED,
    ClassAd,
    ClassAdSyntaxError,
    parse_ad,
    parse_expr,
    unparse,
)
from pilotwms.jdl.errors import caret_lines

EXIT_OK = 0
EXIT_SYNTAX = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="classad",
    help="Evaluate ClassAd expressions (exit 0 evaluated, 1 syntax error, 2 usage error).",
    no_args_is_help=True,
)


def _load(spec: str, option: str) -> tuple[str, str]:
    """The text of an ad given inline or as ``@file``, and a name for messages."""
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint=option
            ) from exc
    return spec, option


def _syntax_error(console: Console, name: str, exc: ClassAdSyntaxError) -> None:
    console.print(escape(f"{name}:{exc.line}:{exc.column}: syntax error: {exc.message}"))
    shown = caret_lines(exc.source_line, exc.column)
    if shown:
        console.print(escape(shown))


def _parse_ad(console: Console, spec: str | None, option: str) -> ClassAd | None:
    if spec is None:
        return None
    text, name = _load(spec, option)
    try:
        return parse_ad(text)
    except ClassAdSyntaxError as exc:
        _syntax_error(console, name, exc)
        raise typer.Exit(EXIT_SYNTAX) from None


def format_value(value: Any) -> str:
    """A value as ClassAd text: ``true``, ``"a"``, ``{1, 2}``, ``[a = 1]``, ``undefined``."""
    if value is UNDEFINED:
        return "undefined"
    if value is ERROR:
        return "error"
    if isinstance(value, ClassAd):
        return unparse(value)
    return unparse(ClassAd.from_python({"v": value})["v"])


def _json_value(value: Any) -> Any:
    if value is UNDEFINED:
        return {"undefined": True}
    if value is ERROR:
        return {"error": True}
    if isinstance(value, ClassAd):
        return {str(k): _json_value(value.evaluate(str(k))) for k in value}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


@app.command("eval")
def eval_command(
    expression: str = typer.Argument(..., help="The ClassAd expression to evaluate."),
    my: str | None = typer.Option(None, "--my", help="The own ad: inline text or @file."),
    target: str | None = typer.Option(
        None, "--target", help="The counterpart ad (other./target.): inline text or @file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the value as JSON."),
) -> None:
    """Evaluate EXPRESSION with optional --my and --target ads and print its value."""
    console = Console(soft_wrap=True, highlight=False)
    my_ad = _parse_ad(console, my, "--my")
    target_ad = _parse_ad(console, target, "--target")
    try:
        expr = parse_expr(expression)
    except ClassAdSyntaxError as exc:
        _syntax_error(console, "EXPR", exc)
        raise typer.Exit(EXIT_SYNTAX) from None
    value = expr.evaluate(my_ad, target_ad)
    if as_json:
        sys.stdout.write(json.dumps(_json_value(value)) + "\n")
    else:
        console.print(escape(format_value(value)))
    raise typer.Exit(EXIT_OK)
