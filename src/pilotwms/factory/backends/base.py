"""The one small bulk interface every batch system sits behind, and the command-runner seam.

``Backend.submit(n, context)`` submits ``n`` identical pilots and returns their batch ids,
``status(ids)`` says where each one is in our own vocabulary (``BatchState``, with the batch
system's reason when it failed), ``cancel(ids)`` removes them. Each backend module holds its
script template, its job-id pattern and a table translating native states into ours (as Parsl's
providers do), and runs every command through a ``CommandRunner`` -- so tests swap in a fake
runner with recorded outputs, and nothing else in the backend needs a batch system to be tested.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pilotwms.core.errors import PilotWMSError

__all__ = [
    "Backend",
    "BackendError",
    "BatchState",
    "CommandRunner",
    "CompletedCommand",
    "PilotBatchState",
    "PilotLogs",
    "PilotScriptContext",
    "SubmitError",
    "agent_command",
    "render_pilot_body",
]


class BatchState(StrEnum):
    """A pilot's state in the batch system, in words common to every backend."""

    QUEUED = "queued"  # submitted, waiting for resources (or held by the batch system)
    RUNNING = "running"
    FINISHED = "finished"  # ended with exit code 0
    FAILED = "failed"  # ended otherwise; ``reason`` says how
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # the batch system no longer (or not yet) knows the id

    @property
    def ended(self) -> bool:
        return self in (BatchState.FINISHED, BatchState.FAILED, BatchState.CANCELLED)


@dataclass(frozen=True)
class PilotBatchState:
    """One pilot's batch state, the batch system's own word for it and, if any, its reason."""

    state: BatchState
    native: str = ""
    reason: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class PilotLogs:
    """Where a pilot's own stdout and stderr end up."""

    stdout: Path
    stderr: Path


@dataclass(frozen=True)
class CompletedCommand:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """``argv[0]`` with its exit status and the first line of what it said, for reasons."""
        said = (self.stderr.strip() or self.stdout.strip()).splitlines()
        first = said[0] if said else "no output"
        return f"{self.argv[0]} exited {self.returncode}: {first}"


class CommandRunner:
    """Runs one batch-system command to completion. The only place that shells out.

    A missing executable or a timeout is reported as a failed ``CompletedCommand`` (127 and 124,
    as a shell would), so a broken batch system is a back-off reason, not a crash of the factory.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env is not None else None

    def run(
        self, argv: Sequence[str], input: str | None = None, timeout: float = 60.0
    ) -> CompletedCommand:
        args = tuple(str(a) for a in argv)
        try:
            done = subprocess.run(
                args,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env,
                check=False,
            )
        except FileNotFoundError:
            return CompletedCommand(args, 127, "", f"{args[0]}: command not found on PATH")
        except subprocess.TimeoutExpired:
            return CompletedCommand(args, 124, "", f"{args[0]}: no answer within {timeout:.0f}s")
        return CompletedCommand(args, done.returncode, done.stdout, done.stderr)


class BackendError(PilotWMSError):
    """A batch-system command failed or answered something we cannot read."""

    title = "Batch system error"

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend

    def extra(self) -> dict[str, Any]:
        return {"backend": self.backend}


class SubmitError(BackendError):
    """A bulk submission that failed part-way; ``submitted`` holds the ids that did go in, so the
    caller can record them instead of losing track of live pilots."""

    title = "Pilot submission failed"

    def __init__(self, backend: str, message: str, submitted: Sequence[str] = ()) -> None:
        super().__init__(backend, message)
        self.submitted = list(submitted)

    def extra(self) -> dict[str, Any]:
        return {"backend": self.backend, "submitted": self.submitted}


@dataclass(frozen=True)
class PilotScriptContext:
    """What a pilot needs to start the agent: filled in by the factory for one queue."""

    server_url: str
    token: str
    queue: str
    site: str
    wait_term: int
    max_runtime: int | None
    log_dir: Path
    cores: int = 1
    memory_mb: int = 2000
    walltime_s: int = 3600
    gpus: int = 0
    tags: tuple[str, ...] = ()
    #: interpreter on the worker node
    python: str = "python3"
    #: the agent zipapp: a path on the worker node, an http(s) URL to fetch it from, or None
    #: to run the installed package (``python -m pilotwms.agent``)
    agent: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    #: backend options of the queue (partition, account, directives...)
    partition: str | None = None
    account: str | None = None
    directives: tuple[str, ...] = ()


def agent_command(ctx: PilotScriptContext, agent_path: str | None = None) -> list[str]:
    """The agent's command line. ``agent_path`` replaces a URL once the script has fetched it.

    The pilot token is not on it: a command line is readable by every user of the worker node
    (``ps``), so the token travels in ``PILOTWMS_TOKEN`` (see :func:`agent_environment`).
    """
    agent = agent_path if agent_path is not None else ctx.agent
    head = [ctx.python, "-m", "pilotwms.agent"] if agent is None else [ctx.python, agent]
    argv = [
        *head,
        "--server",
        ctx.server_url,
        "--queue",
        ctx.queue,
        "--site",
        ctx.site,
        "--cores",
        str(ctx.cores),
        "--memory-mb",
        str(ctx.memory_mb),
        "--wait-term",
        str(ctx.wait_term),
    ]
    if ctx.tags:
        argv += ["--tags", ",".join(ctx.tags)]
    if ctx.max_runtime is not None:
        argv += ["--max-runtime", str(ctx.max_runtime)]
    return argv + list(ctx.extra_args)


def agent_environment(ctx: PilotScriptContext) -> dict[str, str]:
    """The variables the agent needs besides its command line: the token, the queue."""
    return {"PILOTWMS_TOKEN": ctx.token, "PILOTWMS_QUEUE": ctx.queue}


def render_pilot_body(ctx: PilotScriptContext, batch_id_variable: str | None = None) -> str:
    """The shell lines every batch pilot runs after its header: environment, agent, exit code.

    The agent finds its queue in ``PILOTWMS_QUEUE`` and its batch id in ``PILOTWMS_BATCH_ID``
    (copied from the batch system's own variable, ``batch_id_variable``), so the server can tie
    a registered pilot to the batch job the factory submitted. An agent given as a URL is fetched
    with the pilot's own Python (no curl or wget needed on the node) into a scratch directory.
    """
    lines = [
        "set -u",
        # The batch system may pass on the factory's own environment; the agent reads
        # PILOTWMS_* variables as settings, so none of the factory's may leak into the pilot.
        "for v in $(env | sed -n 's/^\\(PILOTWMS_[A-Za-z0-9_]*\\)=.*/\\1/p'); do",
        '    unset "$v"',
        "done",
    ]
    for name, value in sorted(ctx.environment.items()):
        lines.append(f"export {name}={shlex.quote(value)}")
    for name, value in agent_environment(ctx).items():
        lines.append(f"export {name}={shlex.quote(value)}")
    if batch_id_variable:
        lines.append(f'export PILOTWMS_BATCH_ID="${{{batch_id_variable}:-}}"')
    # An agent locks its work directory, and several pilots may share a node: each gets its
    # own, under the queue's PILOTWMS_WORK_DIR if it sets one, else the job's scratch space.
    lines.append(
        'PILOTWMS_WORK_DIR="${PILOTWMS_WORK_DIR:-${TMPDIR:-/tmp}}/pilotwms-pilot-'
        '${PILOTWMS_BATCH_ID:-$$}"'
    )
    lines.append("export PILOTWMS_WORK_DIR")
    agent = ctx.agent
    if agent is not None and agent.startswith(("http://", "https://")):
        # The server hands the zipapp to pilot tokens only: send the pilot's own.
        fetch = (
            "import os, sys, urllib.request as u; "
            "r = u.Request(sys.argv[1], headers={'Authorization': "
            "'Bearer ' + os.environ['PILOTWMS_TOKEN']}); "
            "open(sys.argv[2], 'wb').write(u.urlopen(r, timeout=300).read())"
        )
        complaint = shlex.quote(f"cannot fetch the agent from {agent}")
        lines += [
            'PILOT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pilotwms-pilot.XXXXXX")',
            "trap 'rm -rf \"$PILOT_TMP\"' EXIT",
            f"{shlex.quote(ctx.python)} -c {shlex.quote(fetch)} {shlex.quote(agent)} "
            f'"$PILOT_TMP/agent.pyz" || {{ echo {complaint} >&2; exit 90; }}',
        ]
        command = " ".join(shlex.quote(a) for a in agent_command(ctx, "@AGENT@"))
        command = command.replace("@AGENT@", '"$PILOT_TMP/agent.pyz"')
        # The shell stays (to remove the fetched file), so it passes the batch system's
        # SIGTERM on to the agent -- once, so that the agent drains -- and waits for it.
        lines += [
            f"{command} &",
            "agent=$!",
            "trap 'kill -TERM \"$agent\" 2>/dev/null' TERM INT HUP",
            'wait "$agent"; rc=$?',
            'while kill -0 "$agent" 2>/dev/null; do wait "$agent"; rc=$?; done',
            'exit "$rc"',
        ]
    else:
        lines.append("exec " + " ".join(shlex.quote(a) for a in agent_command(ctx)))
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, executable: bool = False) -> Path:
    """Write a file only its owner can read: pilot scripts carry the pilot token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700 if executable else 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o700 if executable else 0o600)
    return path


class Backend(ABC):
    """A batch system seen as three bulk operations."""

    #: the name used in the queue configuration (``backend = "slurm"``)
    name: str = ""

    def __init__(self, runner: CommandRunner | None = None) -> None:
        self.runner = runner or CommandRunner()

    @abstractmethod
    def submit(self, n: int, ctx: PilotScriptContext) -> list[str]:
        """Submit ``n`` pilots; return exactly ``n`` batch ids or raise ``SubmitError``."""

    @abstractmethod
    def status(self, ids: Sequence[str]) -> dict[str, PilotBatchState]:
        """The state of each id; ids the batch system does not know are ``UNKNOWN``."""

    @abstractmethod
    def cancel(self, ids: Sequence[str]) -> None:
        """Remove pilots, queued or running. Ids that already ended are not an error."""

    def drain(self, ids: Sequence[str]) -> None:
        """Stop pilots gently: a running one's agent gets SIGTERM -- and only the agent, not
        its jobs -- so that it drains and its jobs are requeued as shallow retries; queued ones
        are removed. The caller ``cancel``s what is still alive long after. By default the
        same as ``cancel`` (batch systems that signal only the job's top process)."""
        self.cancel(ids)

    @abstractmethod
    def log_paths(self, batch_id: str, log_dir: Path) -> PilotLogs:
        """Where the pilot with ``batch_id`` writes its stdout and stderr."""

    def forget(self, batch_id: str, log_dir: Path) -> None:
        """Remove what an ended pilot left in ``log_dir`` (by default: its two log files)."""
        paths = self.log_paths(batch_id, log_dir)
        for path in (paths.stdout, paths.stderr):
            with contextlib.suppress(OSError):
                path.unlink()

    def _run(self, argv: Sequence[str], input: str | None = None) -> CompletedCommand:
        return self.runner.run(argv, input=input)


def walltime_hms(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), the walltime syntax Slurm and PBS both accept."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def unknown(native: str = "", reason: str = "") -> PilotBatchState:
    return PilotBatchState(
        BatchState.UNKNOWN, native, reason or "the batch system does not know it"
    )
