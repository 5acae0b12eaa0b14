"""Problems found in a JDL, and how validation collects them.

A :class:`Problem` is located (line and column of the attribute at fault) and says how to fix
it; a :class:`ValidationReport` holds every error and warning of one JDL. The collector knows the
dialect: a rule of gLite that DIRAC does not share (see ``validation``) reports through
:meth:`Collector.soft`, an error for gLite and a warning for a DIRAC-dialect JDL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilotwms.classad import ClassAd
from pilotwms.jdl.schema import DIRAC_MARKERS


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in a JDL, located and with a fix.

    ``line``/``column`` are 1-based (0 when the problem is about something missing and no
    better place exists); ``node`` names the collection/DAG node concerned.
    """

    attribute: str | None
    line: int
    column: int
    message: str
    hint: str = ""
    severity: str = "error"
    node: str | None = None

    def format(self, filename: str = "<jdl>") -> str:
        """``file:line:col: severity: message (hint)`` as compilers print it."""
        where = f"{filename}:{self.line}:{self.column}"
        text = f"{where}: {self.severity}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
            "node": self.node,
        }


@dataclass(frozen=True)
class ValidationReport:
    """All the errors and warnings of one JDL."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    dialect: str = "glite"

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def problems(self) -> list[Problem]:
        """Errors and warnings together, in source order."""
        return sorted([*self.errors, *self.warnings], key=lambda p: (p.line or 10**9, p.column))


Where = Callable[[str], tuple[int, int]]


class Collector:
    """Accumulates problems; ``soft`` problems become warnings in the DIRAC dialect."""

    def __init__(self, dialect: str, node: str | None = None) -> None:
        self.dialect = dialect
        self.node = node
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def for_node(self, node: str) -> Collector:
        child = Collector(self.dialect, node)
        child.errors = self.errors
        child.warnings = self.warnings
        return child

    def _add(
        self, severity: str, attr: str | None, at: tuple[int, int], message: str, hint: str
    ) -> None:
        prefix = f"node {self.node}: " if self.node else ""
        problem = Problem(attr, at[0], at[1], prefix + message, hint, severity, self.node)
        (self.errors if severity == "error" else self.warnings).append(problem)

    def error(self, attr: str | None, at: tuple[int, int], message: str, hint: str = "") -> None:
        self._add("error", attr, at, message, hint)

    def warn(self, attr: str | None, at: tuple[int, int], message: str, hint: str = "") -> None:
        self._add("warning", attr, at, message, hint)

    def soft(self, attr: str | None, at: tuple[int, int], message: str, hint: str = "") -> None:
        """An error for gLite, a warning for a DIRAC-dialect JDL."""
        if self.dialect == "dirac":
            self.warn(attr, at, f"{message} (accepted for DIRAC's dialect)", hint)
        else:
            self.error(attr, at, message, hint)


def detect_dialect(ad: ClassAd) -> str:
    """``dirac`` when ``ad`` uses an attribute only DIRAC defines, else ``glite``."""
    return "dirac" if any(str(k).lower() in DIRAC_MARKERS for k in ad) else "glite"


__all__ = ["Collector", "Problem", "ValidationReport", "Where", "detect_dialect"]
