"""The one error hierarchy of pilotwms.

Every error a user or a pilot can provoke is a ``PilotWMSError`` with structured fields and the
HTTP status it maps to. ``server/api/errors.py`` turns them into RFC 9457 problem responses in one
place; the CLI and the client turn those back into one readable message. Messages say what was
wrong, where, and how to fix it.

Subclasses add fields with ``extra()`` so the problem response carries them as members
(e.g. ``job_id``, ``line``, ``column``) and clients can act on them without parsing text.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PilotWMSError(Exception):
    """Root of all pilotwms errors; ``status`` is the HTTP status the API answers with."""

    status: ClassVar[int] = 500
    #: Short, stable title of the problem type (RFC 9457 ``title``).
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def type_name(self) -> str:
        """The problem type: the class name in kebab case, stable across releases."""
        name = type(self).__name__
        out = [name[0].lower()]
        for ch in name[1:]:
            if ch.isupper():
                out.append("-")
            out.append(ch.lower())
        return "".join(out)

    def extra(self) -> dict[str, Any]:
        """Structured members added to the problem response."""
        return {}

    def headers(self) -> dict[str, str]:
        """HTTP headers the response must carry (e.g. ``Retry-After``)."""
        return {}


class BadRequest(PilotWMSError):
    """The request itself is malformed (a field has the wrong type, a value is out of range)."""

    status = 400
    title = "Bad request"


class InvalidJobDescription(BadRequest):
    """A JDL that does not parse or does not validate; carries every problem found."""

    title = "Invalid job description"

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def extra(self) -> dict[str, Any]:
        return {"problems": self.problems}


class Unauthenticated(PilotWMSError):
    """No token, an unknown token, an expired or a revoked one."""

    status = 401
    title = "Authentication required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="pilotwms"'}


class Forbidden(PilotWMSError):
    """The token is valid but its role may not use this route."""

    status = 403
    title = "Forbidden"


class NotFound(PilotWMSError):
    """Something that does not exist, or that the caller may not see."""

    status = 404
    title = "Not found"


class JobNotFound(NotFound):
    title = "Job not found"

    def __init__(self, job_id: int | str) -> None:
        super().__init__(
            f"job {job_id} does not exist or is not yours; "
            "list your jobs with 'pilotwms status --all'"
        )
        self.job_id = job_id

    def extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id}


class PilotNotFound(NotFound):
    title = "Pilot not found"

    def __init__(self, pilot_id: int | str) -> None:
        super().__init__(f"pilot {pilot_id} is not registered (it may have been purged)")
        self.pilot_id = pilot_id

    def extra(self) -> dict[str, Any]:
        return {"pilot_id": self.pilot_id}


class BlobNotFound(NotFound):
    title = "Sandbox file not found"

    def __init__(self, digest: str) -> None:
        super().__init__(
            f"no sandbox file with sha256 digest {digest}; upload it first "
            "(POST /api/v1/sandboxes) or send the file with the submission"
        )
        self.digest = digest

    def extra(self) -> dict[str, Any]:
        return {"digest": self.digest}


class Conflict(PilotWMSError):
    """The request is well-formed but conflicts with the current state."""

    status = 409
    title = "Conflict"


class IllegalTransition(Conflict):
    """A job state change that the lifecycle table does not allow."""

    title = "Illegal state transition"

    def __init__(self, job_id: int | str, from_: str, to: str, cause: str) -> None:
        super().__init__(f"job {job_id} cannot go from {from_} to {to} ({cause})")
        self.job_id = job_id
        self.from_ = from_
        self.to = to
        self.cause = cause

    def extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "from": self.from_, "to": self.to, "cause": self.cause}


class StaleAttempt(Conflict):
    """A report from an attempt that is no longer the job's current one (a zombie pilot)."""

    title = "Stale attempt"

    def __init__(self, job_id: int | str, attempt: int | str, current: int | str | None) -> None:
        super().__init__(
            f"attempt {attempt} of job {job_id} is no longer current "
            f"(current attempt: {current}); the report was ignored"
        )
        self.job_id = job_id
        self.attempt = attempt
        self.current = current

    def extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "attempt": self.attempt, "current": self.current}


class TooLarge(PilotWMSError):
    """A sandbox file or a whole sandbox over the configured limit."""

    status = 413
    title = "Too large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size} bytes, over the limit of {limit} bytes; "
            "ship large data through a URI (InputSandbox http(s):// entries) instead"
        )
        self.what = what
        self.size = size
        self.limit = limit

    def extra(self) -> dict[str, Any]:
        return {"what": self.what, "size": self.size, "limit": self.limit}


class UnsafeArchive(BadRequest):
    """An archive member that would escape its directory, a link, a device or a bomb."""

    title = "Unsafe archive"

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"archive member {member!r} refused: {reason}")
        self.member = member
        self.reason = reason

    def extra(self) -> dict[str, Any]:
        return {"member": self.member, "reason": self.reason}


class ServiceUnavailable(PilotWMSError):
    """The database (or another dependency) cannot be reached; clients should retry."""

    status = 503
    title = "Service unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ConfigurationError(PilotWMSError):
    """Settings that cannot work (bad URL, unwritable data directory, database not migrated)."""

    status = 500
    title = "Configuration error"
