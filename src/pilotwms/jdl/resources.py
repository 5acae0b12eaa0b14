"""What a job asks of the slot it runs in: cores, whole node, memory, time.

The matcher groups waiting jobs by these and a pilot's slot must cover them. They are read from
the attributes below, the first one present winning; values that are not integers are ignored
(the validator reports them).

- ``cpus``: ``CpuNumber`` (gLite), the deprecated ``NodeNumber``, ``NumberOfProcessors`` (DIRAC),
  then ``SMPGranularity`` (cores per host); default 1.
- ``whole_node``: ``WholeNodes`` (gLite).
- ``memory_mb``: ``Memory`` (pilotwms), ``MaxRAM`` (DIRAC), in megabytes.
- ``wall_time_s``: ``MaxWallTime`` (pilotwms), in seconds.
- ``cpu_time_s``: ``CPUTime`` (DIRAC), ``MaxCPUTime`` (pilotwms), in seconds.

gLite itself expresses memory and time limits only as Requirements on the CE
(``other.GlueHostMainMemoryRAMSize``, ``other.GlueCEPolicyMaxWallClockTime``); those stay in
Requirements and are evaluated by the matcher, not turned into a request here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotwms.classad import ClassAd
from pilotwms.jdl.values import bool_of, int_of

CPU_ATTRIBUTES = ("CpuNumber", "NodeNumber", "NumberOfProcessors", "SMPGranularity")
MEMORY_ATTRIBUTES = ("Memory", "MaxRAM")
WALL_TIME_ATTRIBUTES = ("MaxWallTime",)
CPU_TIME_ATTRIBUTES = ("CPUTime", "MaxCPUTime")


@dataclass(frozen=True)
class ResourceRequest:
    """The resources one job needs."""

    cpus: int = 1
    whole_node: bool = False
    memory_mb: int | None = None
    wall_time_s: int | None = None
    cpu_time_s: int | None = None


def _first_int(ad: ClassAd, names: tuple[str, ...], *, minimum: int) -> int | None:
    for name in names:
        value = int_of(ad, name)
        if value is not None and value >= minimum:
            return value
    return None


def resources(ad: ClassAd) -> ResourceRequest:
    """The :class:`ResourceRequest` of a job ad (see the module docstring for the names)."""
    return ResourceRequest(
        cpus=_first_int(ad, CPU_ATTRIBUTES, minimum=1) or 1,
        whole_node=bool_of(ad, "WholeNodes"),
        memory_mb=_first_int(ad, MEMORY_ATTRIBUTES, minimum=0),
        wall_time_s=_first_int(ad, WALL_TIME_ATTRIBUTES, minimum=0),
        cpu_time_s=_first_int(ad, CPU_TIME_ATTRIBUTES, minimum=0),
    )


__all__ = ["ResourceRequest", "resources"]
