"""Batch-system backends behind one bulk interface (``submit``, ``status``, ``cancel``).

``BACKENDS`` maps the ``backend`` name of a queue to its class; a new batch system (Kubernetes
is the next one: pods as pilots, ``kubectl``-free through the same ``CommandRunner`` seam or the
API) is one module with its script template, id pattern and state table, plus one entry here
and its name in ``pilotwms.factory.config.BACKEND_NAMES``.
"""

from __future__ import annotations

from pilotwms.factory.backends.base import (
    Backend,
    BackendError,
    BatchState,
    CommandRunner,
    CompletedCommand,
    PilotBatchState,
    PilotLogs,
    PilotScriptContext,
    SubmitError,
)
from pilotwms.factory.backends.htcondor import HTCondorBackend
from pilotwms.factory.backends.local import LocalBackend
from pilotwms.factory.backends.pbs import PBSBackend
from pilotwms.factory.backends.slurm import SlurmBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BatchState",
    "CommandRunner",
    "CompletedCommand",
    "HTCondorBackend",
    "LocalBackend",
    "PBSBackend",
    "PilotBatchState",
    "PilotLogs",
    "PilotScriptContext",
    "SlurmBackend",
    "SubmitError",
    "make_backend",
]

BACKENDS: dict[str, type[Backend]] = {
    "local": LocalBackend,
    "slurm": SlurmBackend,
    "htcondor": HTCondorBackend,
    "pbs": PBSBackend,
}


def make_backend(
    name: str, runner: CommandRunner | None = None, pbs_flavor: str = "pro"
) -> Backend:
    """The backend for a queue's ``backend`` name."""
    if name == "pbs":
        return PBSBackend(runner, flavor="torque" if pbs_flavor == "torque" else "pro")
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise BackendError(name, f"no such backend; known: {', '.join(BACKENDS)}") from None
    return cls(runner)
