"""GPUs of the slot, as ``nvidia-smi`` reports them and ``CUDA_VISIBLE_DEVICES`` restricts them.

A batch system that gives a job part of a node's GPUs says which through
``CUDA_VISIBLE_DEVICES``; offering all GPUs of the node would let two pilots' jobs share one.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, List, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[str], float], Optional[str]]
"""Runs a command with a timeout; returns its stdout, or None if it failed or is missing."""

QUERY = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,driver_version,uuid",
    "--format=csv,noheader,nounits",
]
"""The query: index, name, total memory in MiB, driver version and UUID, one GPU a line."""


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU as published in the slot ad."""

    index: int
    name: str
    memory_mb: int
    driver_version: str
    uuid: str = ""


def _int(text: str) -> Optional[int]:
    try:
        return int(float(text))
    except ValueError:
        return None


def parse_nvidia_smi(text: str) -> List[Gpu]:
    """Parse the CSV of :data:`QUERY` (the UUID column is optional); bad lines are skipped."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4 or not fields[0]:
            continue
        index = _int(fields[0])
        if index is None:
            continue
        # A GPU name has no comma in practice; should one ever, keep the tail fields aligned.
        extra = len(fields) - (5 if fields[-1].startswith(("GPU-", "MIG-")) else 4)
        name = ", ".join(fields[1 : 2 + extra])
        rest = fields[2 + extra :]
        memory = _int(rest[0]) if rest else None
        driver = rest[1] if len(rest) > 1 else ""
        uuid = rest[2] if len(rest) > 2 else ""
        gpus.append(Gpu(index, name, memory or 0, driver, uuid))
    return gpus


def visible(gpus: List[Gpu], cuda_visible_devices: Optional[str]) -> List[Gpu]:
    """The GPUs a job on this slot may use, following CUDA's reading of the variable.

    Unset: all. Empty, ``-1`` or ``NoDevFiles``: none. Otherwise a comma list of indices or
    (prefixes of) ``GPU-`` UUIDs; as in CUDA, the list ends at the first entry that names no GPU.
    """
    if cuda_visible_devices is None:
        return list(gpus)
    value = cuda_visible_devices.strip()
    if value in ("", "-1", "NoDevFiles"):
        return []
    chosen: List[Gpu] = []
    for entry in (e.strip() for e in value.split(",")):
        match: Optional[Gpu] = None
        if entry.isdigit():
            match = next((g for g in gpus if g.index == int(entry)), None)
        elif entry.startswith("GPU-"):
            match = next((g for g in gpus if g.uuid and g.uuid.startswith(entry)), None)
        if match is None:
            break
        if match not in chosen:
            chosen.append(match)
    return chosen


def discover_gpus(
    run: Runner, which: Callable[[str], Optional[str]], env: Mapping[str, str]
) -> List[Gpu]:
    """GPUs visible to this slot; none when ``nvidia-smi`` is absent or fails."""
    if which("nvidia-smi") is None:
        return []
    output = run(QUERY, 20.0)
    if output is None:
        log.warning("nvidia-smi is present but failed; publishing no GPUs")
        return []
    return visible(parse_nvidia_smi(output), env.get("CUDA_VISIBLE_DEVICES"))
