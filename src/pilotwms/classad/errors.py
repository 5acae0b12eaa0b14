"""Syntax errors of the ClassAd language, located for humans."""

from __future__ import annotations


class ClassAdSyntaxError(ValueError):
    """Raised when text is not a ClassAd or a ClassAd expression.

    ``line`` and ``column`` are 1-based and point at the token where the parser got stuck, so
    that an editor or a JDL validator can put a caret under it.
    """

    def __init__(self, message: str, line: int, column: int, source_line: str = "") -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.line = line
        self.column = column
        self.source_line = source_line

    def format(self) -> str:
        """The message, the offending source line and a caret under the column."""
        text = f"line {self.line}, column {self.column}: {self.message}"
        if not self.source_line:
            return text
        caret = " " * (max(self.column, 1) - 1) + "^"
        return f"{text}\n{self.source_line}\n{caret}"
