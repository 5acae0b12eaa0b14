"""Reading JDL text into a ClassAd.

gLite's UI drops whole-line ``#``/``//`` comments, joins the lines and wraps the text in ``[ ]``
when it does not start with ``[`` (``glite::jdl::Ad::fromFile``). The ClassAd parser of
``pilotwms.classad`` accepts the bracket-less form and the comments itself, so the text is parsed
as written and every line and column reported is the one in the user's file.
"""

from __future__ import annotations

from pathlib import Path

from pilotwms.classad import ClassAd, ClassAdSyntaxError, parse_ad
from pilotwms.jdl.errors import JDLSyntaxError


def _source_line(text: str, line: int) -> str:
    lines = text.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return ""


def parse_jdl(text: str, filename: str = "<jdl>") -> ClassAd:
    """Parse a JDL (bracketed or not) into a :class:`ClassAd`.

    Raises :class:`JDLSyntaxError` carrying ``filename``, the line and column of the fault and
    the source line, so that ``str(error)`` shows a caret under the fault.
    """
    try:
        return parse_ad(text)
    except ClassAdSyntaxError as exc:
        line = int(getattr(exc, "line", 0) or 0)
        column = int(getattr(exc, "column", 0) or 0)
        source_line = getattr(exc, "source_line", None) or _source_line(text, line)
        message = getattr(exc, "message", None) or str(exc)
        raise JDLSyntaxError(filename, line, column, str(message), source_line) from exc


def load_jdl(path: str | Path) -> ClassAd:
    """Read and parse the JDL file at ``path`` (errors name the file as given)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = p.read_text(encoding="latin-1")
    return parse_jdl(text, str(path))
