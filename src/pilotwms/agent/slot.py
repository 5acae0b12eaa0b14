"""What this slot is: cores, memory, disk, OS, batch job and walltime, probed once at start.

Every reader takes its inputs (file paths, the environment, a command runner) through
:class:`Host`, so tests describe fake ``/proc`` and ``/sys/fs/cgroup`` trees and environments
without touching the real machine. When several sources limit cores or memory (cgroup quota, CPU
affinity, the batch system's allocation, HTCondor's machine ad), the smallest wins: a pilot that
offers more than it was given overloads the node and gets its jobs killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from .gpus import Gpu, Runner, discover_gpus

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_UNLIMITED_BYTES = 1 << 60


def run_command(argv: Sequence[str], timeout: float) -> Optional[str]:
    """The real command runner: stdout of ``argv``, or None on any failure or timeout."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _affinity() -> Optional[int]:
    getaffinity = getattr(os, "sched_getaffinity", None)
    return len(getaffinity(0)) if getaffinity else None


@dataclasses.dataclass
class Host:
    """Where the readers look; the defaults are the real machine."""

    proc: Path = Path("/proc")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    os_release: Path = Path("/etc/os-release")
    env: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(os.environ))
    run: Runner = run_command
    which: Callable[[str], Optional[str]] = shutil.which
    affinity: Callable[[], Optional[int]] = _affinity
    cpu_count: Callable[[], Optional[int]] = os.cpu_count
    hostname: str = dataclasses.field(default_factory=socket.gethostname)
    machine: str = dataclasses.field(default_factory=platform.machine)


@dataclasses.dataclass(frozen=True)
class SlotFacts:
    """The static description of the slot; ``glue.slot_ad`` turns it into ClassAd values."""

    cores: int
    cores_source: str
    memory_mb: int
    disk_mb: int
    hostname: str
    arch: str
    os_name: str
    os_id: str
    os_version_id: str
    os_codename: str
    python_version: str
    lrms_type: str
    batch_id: str
    batch_time_left_s: Optional[float]
    gpus: List[Gpu]


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def cgroup_membership(text: str) -> Dict[str, str]:
    """Parse ``/proc/self/cgroup``: controller name (``""`` for v2) to cgroup path."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if not controllers:
            out[""] = path
        for name in controllers.split(","):
            if name:
                out[name] = path
    return out


def _v2_dirs(root: Path, rel: str) -> List[Path]:
    """The cgroup directory of ``rel`` and its ancestors up to ``root`` (limits nest)."""
    dirs = []
    current = root / rel.lstrip("/")
    while True:
        dirs.append(current)
        if current == root or root not in current.parents:
            break
        current = current.parent
    return dirs


def _v1_dir(root: Path, membership: Dict[str, str], controller: str) -> Optional[Path]:
    if controller not in membership:
        return None
    rel = membership[controller].lstrip("/")
    for mount in (controller, "cpu,cpuacct", "cpuacct,cpu"):
        base = root / mount
        if base.is_dir():
            candidate = base / rel
            # Inside a container the own cgroup is mounted at the controller's root.
            return candidate if candidate.is_dir() else base
    return None


def cgroup_cpus(root: Path, self_cgroup: str) -> Optional[float]:
    """CPUs allowed by a cgroup CPU quota (v2 ``cpu.max`` or v1 CFS quota); None: no quota."""
    membership = cgroup_membership(self_cgroup)
    limits: List[float] = []
    if "" in membership:
        for directory in _v2_dirs(root, membership[""]):
            text = _read(directory / "cpu.max")
            if text:
                quota, _, period = text.strip().partition(" ")
                if quota != "max" and period:
                    with contextlib.suppress(ValueError, ZeroDivisionError):
                        limits.append(int(quota) / int(period))
    v1 = _v1_dir(root, membership, "cpu")
    if v1 is not None:
        quota_text = _read(v1 / "cpu.cfs_quota_us")
        period_text = _read(v1 / "cpu.cfs_period_us")
        try:
            if quota_text and period_text and int(quota_text) > 0:
                limits.append(int(quota_text) / int(period_text))
        except (ValueError, ZeroDivisionError):
            pass
    return min(limits) if limits else None


def cgroup_memory_mb(root: Path, self_cgroup: str) -> Optional[int]:
    """Memory limit of the cgroup in MiB (v2 ``memory.max`` or v1 limit); None: unlimited."""
    membership = cgroup_membership(self_cgroup)
    limits: List[int] = []
    if "" in membership:
        for directory in _v2_dirs(root, membership[""]):
            text = (_read(directory / "memory.max") or "").strip()
            if text.isdigit():
                limits.append(int(text))
    if "memory" in membership:
        rel = membership["memory"].lstrip("/")
        base = root / "memory"
        directory = base / rel if (base / rel).is_dir() else base
        text = (_read(directory / "memory.limit_in_bytes") or "").strip()
        if text.isdigit() and int(text) < _UNLIMITED_BYTES:
            limits.append(int(text))
    return min(limits) // MIB if limits else None


def meminfo_total_mb(proc: Path) -> Optional[int]:
    """``MemTotal`` from ``/proc/meminfo`` in MiB."""
    for line in (_read(proc / "meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) // 1024
    return None


def condor_ad(path: Optional[str]) -> Dict[str, str]:
    """Attributes of an HTCondor ad file (``_CONDOR_MACHINE_AD``/``_CONDOR_JOB_AD``), as text.

    Only ``Name = value`` lines are read and string quotes removed: enough for Cpus, Memory,
    ClusterId and ProcId, without a ClassAd parser on the worker node.
    """
    out: Dict[str, str] = {}
    if not path:
        return out
    for line in (_read(Path(path)) or "").splitlines():
        name, sep, value = line.partition("=")
        if sep:
            out[name.strip().lower()] = value.strip().strip('"')
    return out


def _positive_int(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    match = re.match(r"\s*(\d+)", text)
    value = int(match.group(1)) if match else 0
    return value if value > 0 else None


def batch_cpus(env: Mapping[str, str]) -> Dict[str, int]:
    """CPUs the batch system allocated, per source variable that is set."""
    out: Dict[str, int] = {}
    # SLURM_JOB_CPUS_PER_NODE looks like "4(x2),2"; this node's share is the first group.
    for name in ("SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE", "PBS_NP", "NCPUS"):
        value = _positive_int(env.get(name))
        if value:
            out[name] = value
    for name in ("LSB_DJOB_NUMPROC", "NSLOTS"):
        value = _positive_int(env.get(name))
        if value:
            out[name] = value
    cpus = _positive_int(condor_ad(env.get("_CONDOR_MACHINE_AD")).get("cpus"))
    if cpus:
        out["_CONDOR_MACHINE_AD"] = cpus
    return out


def batch_memory_mb(env: Mapping[str, str], cores: int) -> Dict[str, int]:
    """Memory the batch system allocated in MiB, per source."""
    out: Dict[str, int] = {}
    per_node = _positive_int(env.get("SLURM_MEM_PER_NODE"))
    if per_node:
        out["SLURM_MEM_PER_NODE"] = per_node
    per_cpu = _positive_int(env.get("SLURM_MEM_PER_CPU"))
    if per_cpu:
        out["SLURM_MEM_PER_CPU"] = per_cpu * cores
    memory = _positive_int(condor_ad(env.get("_CONDOR_MACHINE_AD")).get("memory"))
    if memory:
        out["_CONDOR_MACHINE_AD"] = memory
    return out


def batch_system(env: Mapping[str, str]) -> "tuple[str, str]":
    """``(lrms type, batch job id)`` from the batch system's variables; ``("fork", "")`` if none."""
    if env.get("SLURM_JOB_ID"):
        return "slurm", env["SLURM_JOB_ID"]
    if env.get("PBS_JOBID"):
        return "pbs", env["PBS_JOBID"]
    if env.get("_CONDOR_JOB_AD") or env.get("_CONDOR_MACHINE_AD"):
        ad = condor_ad(env.get("_CONDOR_JOB_AD"))
        if "clusterid" in ad:
            return "condor", f"{ad['clusterid']}.{ad.get('procid', '0')}"
        return "condor", ""
    if env.get("LSB_JOBID"):
        return "lsf", env["LSB_JOBID"]
    if env.get("JOB_ID") and env.get("SGE_ROOT"):
        return "sge", env["JOB_ID"]
    return "fork", ""


def parse_slurm_duration(text: str) -> Optional[float]:
    """Seconds in a Slurm time (``[D-]HH:MM:SS``, ``MM:SS``, ``MM``); None for unlimited/unset."""
    text = text.strip()
    if not text or text.upper() in ("UNLIMITED", "NOT_SET", "INVALID", "INFINITE"):
        return None
    days = 0
    if "-" in text:
        day_text, _, text = text.partition("-")
        if not day_text.isdigit():
            return None
        days = int(day_text)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        return None
    numbers = [int(p) for p in parts]
    if len(numbers) == 1:
        seconds = numbers[0] * 60
    elif len(numbers) == 2:
        seconds = numbers[0] * 60 + numbers[1]
    else:
        seconds = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    return float(days * 86400 + seconds)


def batch_time_left(host: Host, lrms: str) -> Optional[float]:
    """Seconds of walltime the batch system still gives this pilot, if it can tell cheaply."""
    env = host.env
    if lrms == "slurm" and host.which("squeue"):
        output = host.run(["squeue", "-h", "-j", env["SLURM_JOB_ID"], "-o", "%L"], 10.0)
        if output:
            return parse_slurm_duration(output.splitlines()[0] if output.strip() else "")
    if lrms == "pbs":
        value = _positive_int(env.get("PBS_WALLTIME"))
        if value:
            return float(value)
    return None


def os_release(path: Path) -> Dict[str, str]:
    """The ``KEY=value`` pairs of ``/etc/os-release`` with quotes removed."""
    out: Dict[str, str] = {}
    for line in (_read(path) or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("\"'")
    return out


def disk_free_mb(directory: Path) -> int:
    """Free space in MiB of the filesystem holding ``directory`` (0 if it cannot be read)."""
    # The work directory may not exist yet (``--describe``): measure where it will be made.
    while not directory.exists() and directory.parent != directory:
        directory = directory.parent
    try:
        return shutil.disk_usage(directory).free // MIB
    except OSError:
        return 0


def discover_cores(host: Host) -> "tuple[int, str]":
    """The usable cores and which source limited them (the smallest wins)."""
    candidates: Dict[str, float] = {}
    total = host.cpu_count()
    if total:
        candidates["cpu_count"] = total
    affinity = host.affinity()
    if affinity:
        candidates["sched_getaffinity"] = affinity
    quota = cgroup_cpus(host.cgroup_root, _read(host.proc / "self" / "cgroup") or "")
    if quota is not None:
        candidates["cgroup"] = quota
    candidates.update(batch_cpus(host.env))
    if not candidates:
        return 1, "default"
    source = min(candidates, key=lambda k: candidates[k])
    return max(1, int(candidates[source])), source


def discover_memory_mb(host: Host, cores: int) -> int:
    """Usable memory in MiB: the smallest of cgroup limit, batch allocation and MemTotal."""
    candidates: List[int] = []
    total = meminfo_total_mb(host.proc)
    if total:
        candidates.append(total)
    limit = cgroup_memory_mb(host.cgroup_root, _read(host.proc / "self" / "cgroup") or "")
    if limit is not None:
        candidates.append(limit)
    candidates.extend(batch_memory_mb(host.env, cores).values())
    return min(candidates) if candidates else 0


def discover(
    host: Host,
    work_dir: Path,
    *,
    cores_override: int = 0,
    memory_override_mb: int = 0,
    lrms_override: str = "",
    batch_id_override: str = "",
) -> SlotFacts:
    """Probe the slot once; overrides (from settings) win over what was discovered."""
    cores, source = discover_cores(host)
    if cores_override > 0:
        cores, source = cores_override, "settings"
    memory = memory_override_mb or discover_memory_mb(host, cores)
    lrms, batch_id = batch_system(host.env)
    release = os_release(host.os_release)
    return SlotFacts(
        cores=cores,
        cores_source=source,
        memory_mb=memory,
        disk_mb=disk_free_mb(work_dir),
        hostname=host.hostname,
        arch=host.machine,
        os_name=release.get("NAME", platform.system()),
        os_id=release.get("ID", platform.system().lower()),
        os_version_id=release.get("VERSION_ID", ""),
        os_codename=release.get("VERSION_CODENAME", release.get("VERSION", "")),
        python_version=".".join(str(v) for v in sys.version_info[:3]),
        lrms_type=lrms_override or lrms,
        batch_id=batch_id_override or batch_id,
        batch_time_left_s=batch_time_left(host, lrms),
        gpus=discover_gpus(host.run, host.which, host.env),
    )
