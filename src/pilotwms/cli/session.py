"""What every user verb shares: the client from the configuration, the exit codes, job ids from
arguments and files, and turning any client error into one readable message (never a
traceback).

Exit codes (also in ``docs/cli.md``):

====  ====================================================================================
0     success (``wait``/``submit --wait``: every job ended DONE with exit code 0)
1     a job ended unsuccessfully, nothing matched (``list-match``), or the user declined
2     usage error: bad option, unreadable file, client not configured, confirmation needed
3     the request was refused (by the server, or locally): invalid JDL, illegal state
4     a job (or file) does not exist, or is not yours
5     authentication or authorisation failed (missing, expired or revoked token)
6     the server is unreachable or unavailable (network error, 503)
7     ``wait`` timed out before the jobs ended
====  ====================================================================================
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.markup import escape

from pilotwms.cli.render import console
from pilotwms.client import (
    AuthError,
    Client,
    ClientError,
    ConfigError,
    ConflictError,
    JDLRejected,
    NotFoundError,
    ServerUnavailable,
    WaitTimeout,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_NOT_FOUND = 4
EXIT_AUTH = 5
EXIT_UNAVAILABLE = 6
EXIT_TIMEOUT = 7
EXIT_INTERRUPTED = 130

#: The first line gLite writes into a job id file (``-o``); skipped when reading one (``-i``).
IDS_HEADER = "###Submitted Job Ids###"


def exit_code_of(exc: ClientError) -> int:
    """The documented exit code for a client error."""
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, WaitTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ServerUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, JDLRejected | ConflictError):
        return EXIT_REJECTED
    if exc.status is not None and exc.status >= 500:
        return EXIT_UNAVAILABLE
    # A 4xx answer, or a refusal found locally (an output archive that would overwrite files).
    return EXIT_REJECTED


def error_text(exc: ClientError) -> str:
    """The one message shown for ``exc`` (a JDL error with its source line and caret)."""
    if isinstance(exc, JDLRejected):
        return exc.render()
    if isinstance(exc, AuthError):
        return (
            f"{exc.message} (HTTP {exc.status}); check the token in your client configuration "
            "('pilotwms config show')"
        )
    return exc.message


def report(exc: ClientError) -> None:
    """Print ``exc`` on stderr as ``error: ...``."""
    err = console(stderr=True)
    text = error_text(exc)
    if isinstance(exc, JDLRejected) and exc.problems:
        # Each problem line carries its own "error:"; one header line says what failed.
        err.print(f"[bold red]error:[/bold red] {escape(exc.filename)} is not a valid JDL")
        err.print(escape(text))
        return
    first, _, rest = text.partition("\n")
    err.print(f"[bold red]error:[/bold red] {escape(first)}")
    if rest:
        err.print(escape(rest))


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Run a verb's body: client errors become one message and the documented exit code."""
    try:
        yield
    except ClientError as exc:
        report(exc)
        raise typer.Exit(exit_code_of(exc)) from None
    except KeyboardInterrupt:
        console(stderr=True).print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def make_client() -> Client:
    """The client configured by ``client.toml`` and ``PILOTWMS_URL``/``PILOTWMS_TOKEN``."""
    return Client.from_config()


def read_ids(path: Path) -> list[int]:
    """Job ids from a file: one per line, gLite's header and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from exc
    ids: list[int] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            ids.append(int(line.rsplit("/", 1)[-1]))
        except ValueError:
            raise typer.BadParameter(f"{path}:{number}: {line!r} is not a job id") from None
    return ids


def collect_ids(ids: Sequence[int] | None, input_file: Path | None) -> list[int]:
    """Ids given as arguments and in ``-i FILE``, in order, without duplicates."""
    out = list(ids or [])
    if input_file is not None:
        out += read_ids(input_file)
    return list(dict.fromkeys(out))


def append_ids(path: Path, ids: Sequence[int]) -> None:
    """Append ids to ``path`` as glite-wms-job-submit ``-o`` does (header on a new file)."""
    new = not path.exists() or path.stat().st_size == 0
    try:
        with path.open("a", encoding="utf-8") as f:
            if new:
                f.write(IDS_HEADER + "\n")
            f.writelines(f"{i}\n" for i in ids)
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {path}: {exc.strerror}") from exc


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str) -> datetime:
    """``2026-11-20``, ``2026-11-20T10:00`` (local time unless an offset is given), or a
    duration back from now such as ``90m``, ``6h``, ``2d``."""
    m = _RELATIVE.match(text.strip())
    if m:
        delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        return datetime.now(UTC) - delta
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date (2026-11-20, 2026-11-20T10:00) or a duration (6h, 2d)"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()
