"""The slot as ClassAd attribute values: plain names and the GLUE 1.3 names of gLite.

Real gLite JDLs test ``other.GlueCEStateStatus == "Production"``,
``RegExp("pbs", other.GlueCEInfoLRMSType)``,
``Member("MPICH", other.GlueHostApplicationSoftwareRunTimeEnvironment)``
and rank on ``-other.GlueCEStateEstimatedResponseTime``; a pilot publishes those names so
such JDLs match unchanged. Values are JSON (numbers, strings, booleans, lists); an
expression, such as the pilot's own Requirements, is sent as ``{"expr": "..."}`` and the
server parses it.

A pilot is its own one-slot CE: free CPUs are its free cores, waiting jobs are always 0 and the
estimated response time 0, because a pilot asking for work runs a matched job at once.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .settings import AgentSettings
from .slot import SlotFacts

# Published when the walltime is unknown: GLUE's "no limit" convention in gLite BDII data.
_UNLIMITED_MINUTES = 999999999


def ce_unique_id(facts: SlotFacts, settings: AgentSettings) -> str:
    """``<host>:pilotwms/<site>-<queue>``, the shape of a gLite CE id (``host:port/jobmanager``)."""
    site = settings.site or "local"
    queue = settings.queue or "default"
    return f"{facts.hostname}:pilotwms/{site}-{queue}"


def dynamic_attributes(
    facts: SlotFacts,
    *,
    free_cores: int,
    free_memory_mb: int,
    running_jobs: int,
    time_left_s: Optional[float],
    state: str = "running",
) -> Dict[str, Any]:
    """The attributes that change while the pilot runs (sent again with each work request)."""
    minutes = _UNLIMITED_MINUTES if time_left_s is None else max(0, int(time_left_s // 60))
    seconds = -1 if time_left_s is None else max(0, int(time_left_s))
    return {
        "FreeCpus": free_cores,
        "FreeMemory": free_memory_mb,
        "RunningJobs": running_jobs,
        "TimeLeft": seconds,
        "PilotState": state,
        "GlueCEStateFreeCPUs": free_cores,
        "GlueCEStateFreeJobSlots": free_cores,
        "GlueCEStateRunningJobs": running_jobs,
        "GlueCEStateWaitingJobs": 0,
        "GlueCEStateTotalJobs": running_jobs,
        "GlueCEStateEstimatedResponseTime": 0,
        "GlueCEStateWorstResponseTime": 0,
        "GlueCEPolicyMaxWallClockTime": minutes,
        "GlueCEPolicyMaxCPUTime": (
            minutes if time_left_s is None else minutes * max(1, facts.cores)
        ),
        "GlueCEPolicyMaxObtainableWallClockTime": minutes,
        "GlueCEStateStatus": "Production" if state == "running" else "Draining",
    }


def slot_ad(
    facts: SlotFacts,
    settings: AgentSettings,
    *,
    agent_version: str,
    free_cores: Optional[int] = None,
    free_memory_mb: Optional[int] = None,
    running_jobs: int = 0,
    time_left_s: Optional[float] = None,
    state: str = "running",
) -> Dict[str, Any]:
    """The full slot ad sent at registration (and printed by ``--describe``)."""
    gpus = facts.gpus
    os_major = facts.os_version_id.split(".")[0]
    ad: Dict[str, Any] = {
        # Plain names (HTCondor's spelling where one exists).
        "Cpus": facts.cores,
        "Memory": facts.memory_mb,
        "Disk": facts.disk_mb,
        "GPUs": len(gpus),
        "GPUNames": [g.name for g in gpus],
        "GPUMemory": min((g.memory_mb for g in gpus), default=0),
        "CUDADriverVersion": gpus[0].driver_version if gpus else "",
        "OpSys": "LINUX" if facts.os_id != "darwin" else "OSX",
        "OpSysName": facts.os_name,
        "OpSysId": facts.os_id,
        "OpSysVersion": facts.os_version_id,
        "OpSysMajorVer": int(os_major) if os_major.isdigit() else 0,
        "Arch": facts.arch.upper(),
        "PythonVersion": facts.python_version,
        "Machine": facts.hostname,
        "Site": settings.site,
        "Queue": settings.queue,
        "Tags": list(settings.tags),
        "VOs": list(settings.vos),
        "BatchSystem": facts.lrms_type,
        "BatchJobId": facts.batch_id,
        "PilotVersion": agent_version,
        # GLUE 1.3, as the gLite information system published them.
        "GlueCEUniqueID": ce_unique_id(facts, settings),
        "GlueCEName": settings.queue or "default",
        "GlueCEInfoHostName": facts.hostname,
        "GlueCEInfoLRMSType": facts.lrms_type,
        "GlueCEInfoTotalCPUs": facts.cores,
        "GlueCEImplementationName": "pilotwms",
        "GlueCEImplementationVersion": agent_version,
        "GlueCEPolicyMaxTotalJobs": facts.cores,
        "GlueCEPolicyMaxRunningJobs": facts.cores,
        "GlueCEAccessControlBaseRule": [f"VO:{vo}" for vo in settings.vos],
        "GlueHostArchitectureSMPSize": facts.cores,
        "GlueHostArchitecturePlatformType": facts.arch,
        "GlueHostMainMemoryRAMSize": facts.memory_mb,
        "GlueHostMainMemoryVirtualSize": facts.memory_mb,
        "GlueHostOperatingSystemName": facts.os_name,
        "GlueHostOperatingSystemRelease": facts.os_version_id,
        "GlueHostOperatingSystemVersion": facts.os_codename or facts.os_version_id,
        "GlueHostApplicationSoftwareRunTimeEnvironment": list(settings.tags),
        "GlueHostNetworkAdapterOutboundIP": True,
        "GlueHostNetworkAdapterInboundIP": False,
        "GlueSubClusterLogicalCPUs": facts.cores,
        "GlueSiteName": settings.site,
    }
    ad.update(
        dynamic_attributes(
            facts,
            free_cores=facts.cores if free_cores is None else free_cores,
            free_memory_mb=facts.memory_mb if free_memory_mb is None else free_memory_mb,
            running_jobs=running_jobs,
            time_left_s=time_left_s,
            state=state,
        )
    )
    if settings.requirements.strip():
        ad["Requirements"] = {"expr": settings.requirements.strip()}
    return ad
