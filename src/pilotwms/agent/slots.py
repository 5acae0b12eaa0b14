"""Slot bookkeeping: which cores and how much memory of this pilot are taken by which job.

A pure state object: ``reserve`` and ``release`` return decisions as data and never touch a
process, so the rules (whole-node jobs, memory, the job cap) are table-tested without running
anything. The pilot asks the server only for what :meth:`SlotBook.free` says is left.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional


@dataclasses.dataclass(frozen=True)
class Claim:
    """What one running job holds."""

    key: str
    cores: int
    memory_mb: int


@dataclasses.dataclass(frozen=True)
class Reservation:
    """The answer to a reservation request: granted with what it holds, or refused and why."""

    granted: bool
    key: str
    cores: int = 0
    memory_mb: int = 0
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Free:
    """Free capacity to advertise in a work request."""

    cores: int
    memory_mb: int
    jobs: int


class SlotBook:
    """Cores and memory of the pilot's slot, shared by the jobs it runs.

    ``max_jobs`` 0 means as many jobs as cores. Memory 0 in a request means "no explicit need":
    the job then gets an equal share of memory per core, so that an unannounced job does not
    leave nothing for the next.
    """

    def __init__(self, cores: int, memory_mb: int, max_jobs: int = 0):
        if cores < 1:
            raise ValueError("a slot has at least one core")
        self.cores = cores
        self.memory_mb = max(0, memory_mb)
        self.max_jobs = max_jobs if max_jobs > 0 else cores
        self._claims: Dict[str, Claim] = {}

    @property
    def claims(self) -> Dict[str, Claim]:
        """The current claims by job key (a copy)."""
        return dict(self._claims)

    def free(self) -> Free:
        """What is left for new jobs."""
        used_cores = sum(c.cores for c in self._claims.values())
        used_mem = sum(c.memory_mb for c in self._claims.values())
        jobs_left = self.max_jobs - len(self._claims)
        cores = self.cores - used_cores if jobs_left > 0 else 0
        return Free(
            cores=max(0, cores),
            memory_mb=max(0, self.memory_mb - used_mem),
            jobs=max(0, jobs_left),
        )

    def is_idle(self) -> bool:
        """True when no job holds anything."""
        return not self._claims

    def wanted(self, cores: int, memory_mb: int, whole_node: bool) -> "tuple[int, int]":
        """The cores and memory a job asking for this would hold on this slot."""
        if whole_node:
            return self.cores, self.memory_mb
        cores = max(1, cores)
        if memory_mb <= 0:
            memory_mb = (self.memory_mb * cores) // self.cores
        return cores, memory_mb

    def never_fits(self, cores: int, memory_mb: int, whole_node: bool) -> str:
        """Why a job asking for this can never run on this slot, even empty; "" if it can."""
        want_cores, want_mem = self.wanted(cores, memory_mb, whole_node)
        if want_cores > self.cores:
            return f"needs {want_cores} cores, the slot has {self.cores}"
        if self.memory_mb and want_mem > self.memory_mb:
            return f"needs {want_mem} MiB, the slot has {self.memory_mb}"
        return ""

    def reserve(
        self, key: str, cores: int = 1, memory_mb: int = 0, whole_node: bool = False
    ) -> Reservation:
        """Claim resources for job ``key`` if they are free now; never over-commits."""
        if key in self._claims:
            return Reservation(False, key, reason="already running on this pilot")
        want_cores, want_mem = self.wanted(cores, memory_mb, whole_node)
        if whole_node and self._claims:
            return Reservation(False, key, reason="whole-node job needs an empty pilot")
        if want_cores > self.cores:
            return Reservation(
                False, key, reason=f"needs {want_cores} cores, the slot has {self.cores}"
            )
        if self.memory_mb and want_mem > self.memory_mb:
            return Reservation(
                False, key, reason=f"needs {want_mem} MiB, the slot has {self.memory_mb}"
            )
        free = self.free()
        if free.jobs <= 0:
            return Reservation(False, key, reason=f"already running {self.max_jobs} jobs")
        if want_cores > free.cores:
            return Reservation(False, key, reason=f"needs {want_cores} cores, {free.cores} free")
        if self.memory_mb and want_mem > free.memory_mb:
            return Reservation(
                False, key, reason=f"needs {want_mem} MiB, {free.memory_mb} MiB free"
            )
        claim = Claim(key=key, cores=want_cores, memory_mb=want_mem)
        self._claims[key] = claim
        return Reservation(True, key, cores=want_cores, memory_mb=want_mem)

    def release(self, key: str) -> Optional[Claim]:
        """Give back what job ``key`` held; None if it held nothing."""
        return self._claims.pop(key, None)
