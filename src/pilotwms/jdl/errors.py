"""Errors of the JDL layer.

``pilotwms.jdl`` depends only on ``pilotwms.classad``, so these errors do not derive from
``pilotwms.core.errors``; the server maps them to HTTP problems itself (bad JDL is 400 with the
line and column). Each carries structured fields so that the CLI, the server and the tests never
have to parse a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pilotwms.jdl.problems import Problem


def caret_lines(source_line: str, column: int) -> str:
    """The source line and a caret under ``column`` (1-based).

    Tabs before the column are kept as tabs in the caret line so that the caret lines up in a
    terminal whatever its tab width.
    """
    if not source_line:
        return ""
    prefix = "".join("\t" if ch == "\t" else " " for ch in source_line[: max(column - 1, 0)])
    return f"{source_line}\n{prefix}^"


class JDLError(Exception):
    """Root of every error raised by ``pilotwms.jdl``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, used by ``pilotwms jdl check --json`` and the server."""
        return {"type": type(self).__name__, "message": self.message}


class JDLSyntaxError(JDLError):
    """The text is not a ClassAd: where it went wrong, and the offending line with a caret."""

    def __init__(
        self,
        filename: str,
        line: int,
        column: int,
        message: str,
        source_line: str = "",
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line

    def __str__(self) -> str:
        head = f"{self.filename}:{self.line}:{self.column}: {self.message}"
        shown = caret_lines(self.source_line, self.column)
        return f"{head}\n{shown}" if shown else head

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "filename": self.filename,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "source_line": self.source_line,
        }


class JDLValidationError(JDLError):
    """The JDL parses but breaks gLite's rules; ``problems`` lists every error found."""

    def __init__(self, problems: Sequence[Problem], filename: str = "<jdl>") -> None:
        self.problems = list(problems)
        self.filename = filename
        count = len(self.problems)
        first = self.problems[0].message if self.problems else "invalid JDL"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"{first}{more}")

    def __str__(self) -> str:
        return "\n".join(p.format(self.filename) for p in self.problems) or self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "filename": self.filename,
            "problems": [p.to_dict() for p in self.problems],
        }


class JDLExpansionError(JDLError):
    """A parametric job, collection or DAG cannot be turned into concrete jobs.

    ``line``/``column`` point at the attribute at fault when it is known (0 otherwise);
    ``node`` names the node concerned, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        line: int = 0,
        column: int = 0,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.line = line
        self.column = column

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "node": self.node,
            "line": self.line,
            "column": self.column,
        }
