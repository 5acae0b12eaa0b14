"""The client's exceptions: one root, built from the server's RFC 9457 problem responses.

Every failure a caller can meet is a :class:`ClientError`; ``.problem`` holds the server's
problem JSON (empty for failures that never reached the server), so scripts can branch on
structured members (``status``, ``type``, ``line``...) instead of parsing messages.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "AuthError",
    "ClientError",
    "ConfigError",
    "ConflictError",
    "JDLRejected",
    "NotFoundError",
    "ServerUnavailable",
    "WaitTimeout",
    "caret",
    "error_from_response",
]


def caret(source_line: str, column: int) -> str:
    """``source_line`` and a caret under ``column`` (1-based); tabs kept so the caret aligns."""
    if not source_line:
        return ""
    prefix = "".join("\t" if ch == "\t" else " " for ch in source_line[: max(column - 1, 0)])
    return f"{source_line}\n{prefix}^"


class ClientError(Exception):
    """Root of the client's errors; ``problem`` is the server's problem JSON, if any."""

    def __init__(
        self, message: str, *, status: int | None = None, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})

    def __str__(self) -> str:
        return self.message


class ConfigError(ClientError):
    """The client is not configured (no URL or token), or its configuration file is invalid."""


class AuthError(ClientError):
    """401 or 403: the token is missing, expired, revoked or not allowed to do this."""


class NotFoundError(ClientError):
    """404: no such job (or not one of yours), output file or sandbox file."""


class ConflictError(ClientError):
    """409: the request is not allowed in the job's current state (cancel a finished job)."""


class ServerUnavailable(ClientError):
    """The server cannot be reached, timed out, or answered 502/503/504 (``retry_after`` set
    when the server said when to come back)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, problem=problem)
        self.retry_after = retry_after


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up before the job finished; ``last`` is the last status seen."""

    def __init__(self, message: str, last: object = None) -> None:
        super().__init__(message)
        self.last = last


class JDLRejected(ClientError):
    """The JDL is invalid (found locally or by the server): where, and every problem.

    ``str()`` renders ``file:line:column: message``, the source line and a caret under the
    column, then any further problems, as a compiler does.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str = "<jdl>",
        line: int = 0,
        column: int = 0,
        source_line: str = "",
        problems: list[dict[str, Any]] | None = None,
        status: int | None = None,
        problem: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message, status=status, problem=problem)
        self.source = source
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        self.problems = list(problems or [])

    def render(self, source: str | None = None) -> str:
        """The readable form; ``source`` (the JDL text, by default the one submitted) supplies
        the lines the server did not send."""
        source = self.source if source is None else source
        lines = source.splitlines() if source is not None else []

        def line_of(number: int, given: str = "") -> str:
            if given:
                return given
            return lines[number - 1] if 1 <= number <= len(lines) else ""

        out: list[str] = []
        if not self.problems:
            where = f"{self.filename}:{self.line}:{self.column}" if self.line else self.filename
            out.append(f"{where}: {self.message}")
            shown = caret(line_of(self.line, self.source_line), self.column) if self.line else ""
            if shown:
                out.append(shown)
            return "\n".join(out)
        for p in self.problems:
            number, column = int(p.get("line") or 0), int(p.get("column") or 0)
            where = f"{self.filename}:{number}:{column}" if number else self.filename
            node = f" (node {p['node']})" if p.get("node") else ""
            out.append(f"{where}: {p.get('severity') or 'error'}: {p.get('message')}{node}")
            shown = caret(line_of(number), column) if number else ""
            if shown:
                out.append(shown)
            if p.get("hint"):
                out.append(f"    hint: {p['hint']}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_from_response(response: httpx.Response, *, filename: str | None = None) -> ClientError:
    """The :class:`ClientError` subclass for an error response (problem JSON or not)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    detail = problem.get("detail") or problem.get("title") or response.text.strip()
    message = str(detail or f"HTTP {status} from {response.request.url}")
    kind = str(problem.get("type", ""))
    if status == 400 and ("jdl" in kind or "problems" in problem or "line" in problem):
        problems = problem.get("problems")
        # A syntax error's detail is "file:line:column: message"; keep only the message.
        prefix = f"{problem.get('filename')}:{problem.get('line')}:{problem.get('column')}: "
        if message.startswith(prefix):
            message = message[len(prefix) :]
        return JDLRejected(
            message,
            filename=filename or str(problem.get("filename") or "<jdl>"),
            line=int(problem.get("line") or 0),
            column=int(problem.get("column") or 0),
            source_line=str(problem.get("source_line") or ""),
            problems=[p for p in problems if isinstance(p, dict)]
            if isinstance(problems, list)
            else None,
            status=status,
            problem=problem,
        )
    if status in (401, 403):
        return AuthError(message, status=status, problem=problem)
    if status == 404:
        return NotFoundError(message, status=status, problem=problem)
    if status == 409:
        return ConflictError(message, status=status, problem=problem)
    if status in (502, 503, 504):
        return ServerUnavailable(
            message, status=status, problem=problem, retry_after=_retry_after(response)
        )
    return ClientError(message, status=status, problem=problem)
