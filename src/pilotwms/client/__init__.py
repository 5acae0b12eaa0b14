"""Python API of pilotwms: submit and follow jobs over the server's HTTP API.

::

    from pilotwms.client import Client, JobDescription

    with Client.from_config() as client:
        job = client.submit("examples/hello.jdl")
        status = job.wait(timeout=600)
        if status.succeeded:
            job.output("hello-output")

Glossary: a *job* is one executable run by a pilot; a *compound* job (parametric, collection,
DAG) is a parent whose *nodes* are jobs; the *input sandbox* is the set of files sent with a
job (uploaded once per content, by sha256 digest), the *output sandbox* those brought back.

:class:`AsyncClient` offers the same calls to asyncio programs. Everything raises
:class:`ClientError` subclasses; the user verbs of the ``pilotwms`` command
are built on this package alone.
"""

from pilotwms.client.aio import AsyncClient, AsyncJob
from pilotwms.client.api import Client, ProgressCallback
from pilotwms.client.builder import JobDescription
from pilotwms.client.config import ClientConfig, config_path
from pilotwms.client.errors import (
    AuthError,
    ClientError,
    ConfigError,
    ConflictError,
    JDLRejected,
    NotFoundError,
    ServerUnavailable,
    WaitTimeout,
)
from pilotwms.client.jobs import Compound, Job
from pilotwms.client.models import (
    CancelResult,
    ChildCounts,
    JobEvent,
    JobStatus,
    MatchResult,
    NodeStatus,
    OutputFile,
    Pilot,
    StdoutTail,
    SubmitResult,
    UploadProgress,
)

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "AuthError",
    "CancelResult",
    "ChildCounts",
    "Client",
    "ClientConfig",
    "ClientError",
    "Compound",
    "ConfigError",
    "ConflictError",
    "JDLRejected",
    "Job",
    "JobDescription",
    "JobEvent",
    "JobStatus",
    "MatchResult",
    "NodeStatus",
    "NotFoundError",
    "OutputFile",
    "Pilot",
    "ProgressCallback",
    "ServerUnavailable",
    "StdoutTail",
    "SubmitResult",
    "UploadProgress",
    "WaitTimeout",
    "config_path",
]
