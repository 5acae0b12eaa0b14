"""Slot discovery over fake /proc and /sys/fs/cgroup trees and fake environments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pilotwms.agent import glue, slot
from pilotwms.agent.settings import AgentSettings


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class FakeRunner:
    """Answers commands from a table and records what was run."""

    def __init__(self, answers: Mapping[str, str | None]):
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> str | None:
        self.calls.append(list(argv))
        return self.answers.get(argv[0])


def make_host(
    tmp_path: Path,
    *,
    cgroup: str = "0::/\n",
    files: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    cpu_count: int = 64,
    affinity: int | None = 64,
    meminfo_kb: int = 256 * 1024 * 1024,
    commands: Mapping[str, str | None] | None = None,
) -> slot.Host:
    proc = tmp_path / "proc"
    cg = tmp_path / "cgroup"
    write(proc / "self" / "cgroup", cgroup)
    write(proc / "meminfo", f"MemTotal:       {meminfo_kb} kB\nMemFree: 1 kB\n")
    cg.mkdir(exist_ok=True)
    for rel, text in (files or {}).items():
        write(cg / rel, text)
    write(
        tmp_path / "os-release",
        'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nVERSION_ID="9.3"\n',
    )
    commands = commands or {}
    return slot.Host(
        proc=proc,
        cgroup_root=cg,
        os_release=tmp_path / "os-release",
        env=env or {},
        run=FakeRunner(commands),
        which=lambda name: f"/usr/bin/{name}" if name in commands else None,
        affinity=lambda: affinity,
        cpu_count=lambda: cpu_count,
        hostname="wn01.example.org",
        machine="x86_64",
    )


@pytest.mark.parametrize(
    ("cgroup", "files", "env", "affinity", "expected"),
    [
        pytest.param("0::/\n", {}, {}, 64, (64, "cpu_count"), id="nothing-limits"),
        pytest.param("0::/\n", {}, {}, 12, (12, "sched_getaffinity"), id="affinity"),
        pytest.param(
            "0::/job/step\n",
            {"job/cpu.max": "800000 100000\n", "job/step/cpu.max": "max 100000\n"},
            {},
            64,
            (8, "cgroup"),
            id="cgroup-v2-parent-quota",
        ),
        pytest.param(
            "0::/\n", {"cpu.max": "150000 100000\n"}, {}, 64, (1, "cgroup"), id="v2-fractional"
        ),
        pytest.param(
            "4:cpu,cpuacct:/slurm/job1\n3:memory:/slurm/job1\n",
            {
                "cpu,cpuacct/slurm/job1/cpu.cfs_quota_us": "400000\n",
                "cpu,cpuacct/slurm/job1/cpu.cfs_period_us": "100000\n",
            },
            {},
            64,
            (4, "cgroup"),
            id="cgroup-v1-quota",
        ),
        pytest.param(
            "4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            {},
            64,
            (64, "cpu_count"),
            id="cgroup-v1-unlimited-in-container",
        ),
        pytest.param(
            "0::/\n", {}, {"SLURM_CPUS_ON_NODE": "6"}, 64, (6, "SLURM_CPUS_ON_NODE"), id="slurm"
        ),
        pytest.param(
            "0::/\n",
            {},
            {"SLURM_JOB_CPUS_PER_NODE": "4(x2),2"},
            64,
            (4, "SLURM_JOB_CPUS_PER_NODE"),
            id="slurm-per-node-list",
        ),
        pytest.param("0::/\n", {}, {"PBS_NP": "3"}, 64, (3, "PBS_NP"), id="pbs-np"),
        pytest.param("0::/\n", {}, {"NCPUS": "5"}, 64, (5, "NCPUS"), id="pbs-pro-ncpus"),
        pytest.param(
            "0::/\n", {}, {"SLURM_CPUS_ON_NODE": "8"}, 2, (2, "sched_getaffinity"), id="smallest"
        ),
    ],
)
def test_cores_take_the_smallest_limit(
    tmp_path: Path,
    cgroup: str,
    files: dict[str, str],
    env: dict[str, str],
    affinity: int,
    expected: tuple[int, str],
) -> None:
    host = make_host(tmp_path, cgroup=cgroup, files=files, env=env, affinity=affinity)
    assert slot.discover_cores(host) == expected


def test_condor_machine_ad_limits_cores_and_memory(tmp_path: Path) -> None:
    write(tmp_path / "machine.ad", 'Cpus = 2\nMemory = 4096\nName = "slot1@wn"\n')
    write(tmp_path / "job.ad", "ClusterId = 1234\nProcId = 5\n")
    env = {
        "_CONDOR_MACHINE_AD": str(tmp_path / "machine.ad"),
        "_CONDOR_JOB_AD": str(tmp_path / "job.ad"),
    }
    host = make_host(tmp_path, env=env)
    facts = slot.discover(host, tmp_path)
    assert (facts.cores, facts.cores_source) == (2, "_CONDOR_MACHINE_AD")
    assert facts.memory_mb == 4096
    assert (facts.lrms_type, facts.batch_id) == ("condor", "1234.5")


@pytest.mark.parametrize(
    ("cgroup", "files", "env", "expected"),
    [
        pytest.param("0::/\n", {}, {}, 256 * 1024, id="meminfo"),
        pytest.param(
            "0::/a/b\n",
            {"a/memory.max": str(8 << 30), "a/b/memory.max": "max"},
            {},
            8192,
            id="v2-parent-limit",
        ),
        pytest.param(
            "3:memory:/job\n",
            {"memory/job/memory.limit_in_bytes": str(2 << 30)},
            {},
            2048,
            id="v1-limit",
        ),
        pytest.param(
            "3:memory:/job\n",
            {"memory/job/memory.limit_in_bytes": "9223372036854771712"},
            {},
            256 * 1024,
            id="v1-unlimited",
        ),
        pytest.param("0::/\n", {}, {"SLURM_MEM_PER_NODE": "3000"}, 3000, id="slurm-per-node"),
        pytest.param(
            "0::/\n",
            {},
            {"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "4"},
            4000,
            id="slurm-per-cpu",
        ),
    ],
)
def test_memory_takes_the_smallest_limit(
    tmp_path: Path, cgroup: str, files: dict[str, str], env: dict[str, str], expected: int
) -> None:
    host = make_host(tmp_path, cgroup=cgroup, files=files, env=env)
    cores, _ = slot.discover_cores(host)
    assert slot.discover_memory_mb(host, cores) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("fork", "")),
        ({"SLURM_JOB_ID": "991"}, ("slurm", "991")),
        ({"PBS_JOBID": "12.torque"}, ("pbs", "12.torque")),
        ({"LSB_JOBID": "77"}, ("lsf", "77")),
        ({"JOB_ID": "5", "SGE_ROOT": "/sge"}, ("sge", "5")),
        ({"JOB_ID": "5"}, ("fork", "")),
    ],
)
def test_batch_system_and_job_id(env: dict[str, str], expected: tuple[str, str]) -> None:
    assert slot.batch_system(env) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1-02:03:04", 93784.0),
        ("02:03:04", 7384.0),
        ("03:04", 184.0),
        ("5", 300.0),
        ("UNLIMITED", None),
        ("NOT_SET", None),
        ("garbage", None),
        ("", None),
    ],
)
def test_slurm_duration(text: str, seconds: float | None) -> None:
    assert slot.parse_slurm_duration(text) == seconds


def test_walltime_comes_from_squeue_only_under_slurm(tmp_path: Path) -> None:
    host = make_host(tmp_path, env={"SLURM_JOB_ID": "42"}, commands={"squeue": "1:00:00\n"})
    facts = slot.discover(host, tmp_path)
    assert facts.batch_time_left_s == 3600.0
    assert isinstance(host.run, FakeRunner)
    assert host.run.calls == [["squeue", "-h", "-j", "42", "-o", "%L"]]
    plain = make_host(tmp_path / "plain", commands={"squeue": "1:00:00\n"})
    assert slot.discover(plain, tmp_path).batch_time_left_s is None


def test_overrides_win_and_os_release_is_read(tmp_path: Path) -> None:
    host = make_host(tmp_path, env={"SLURM_CPUS_ON_NODE": "8", "SLURM_JOB_ID": "1"})
    facts = slot.discover(host, tmp_path / "not" / "yet", cores_override=3, memory_override_mb=1000)
    assert (facts.cores, facts.cores_source, facts.memory_mb) == (3, "settings", 1000)
    assert (facts.os_name, facts.os_id, facts.os_version_id) == ("Rocky Linux", "rocky", "9.3")
    assert facts.disk_mb > 0  # measured on the nearest existing parent
    assert facts.gpus == []


def test_slot_ad_has_the_glue_and_plain_names(tmp_path: Path) -> None:
    host = make_host(tmp_path, env={"PBS_JOBID": "7.pbs", "PBS_NP": "4"})
    facts = slot.discover(host, tmp_path)
    settings = AgentSettings(
        site="NIKHEF",
        queue="short",
        tags=["MPI-START", "VO-dteam-sw"],
        vos=["dteam"],
        requirements='other.VOs == "dteam"',
    )
    ad = glue.slot_ad(facts, settings, agent_version="9.9", time_left_s=7200)
    assert ad["GlueCEUniqueID"] == "wn01.example.org:pilotwms/NIKHEF-short"
    assert ad["GlueCEStateStatus"] == "Production"
    assert ad["GlueCEInfoLRMSType"] == "pbs"
    assert ad["GlueCEInfoTotalCPUs"] == ad["GlueCEStateFreeCPUs"] == ad["Cpus"] == 4
    assert ad["GlueHostArchitectureSMPSize"] == 4
    assert ad["GlueCEPolicyMaxWallClockTime"] == 120
    assert ad["GlueCEPolicyMaxCPUTime"] == 480
    assert ad["GlueHostOperatingSystemName"] == "Rocky Linux"
    assert ad["GlueHostOperatingSystemRelease"] == "9.3"
    assert ad["GlueHostArchitecturePlatformType"] == "x86_64"
    assert ad["GlueHostApplicationSoftwareRunTimeEnvironment"] == ["MPI-START", "VO-dteam-sw"]
    assert ad["GlueCEAccessControlBaseRule"] == ["VO:dteam"]
    assert ad["GlueCEStateEstimatedResponseTime"] == 0
    assert ad["GlueCEImplementationName"] == "pilotwms"
    assert ad["GlueHostNetworkAdapterOutboundIP"] is True
    assert ad["BatchJobId"] == "7.pbs"
    assert ad["PilotVersion"] == "9.9"
    assert ad["TimeLeft"] == 7200
    assert ad["Requirements"] == {"expr": 'other.VOs == "dteam"'}
    for name in (
        "GlueHostMainMemoryRAMSize",
        "GlueHostMainMemoryVirtualSize",
        "GlueHostOperatingSystemVersion",
        "GlueCEName",
        "GlueCEInfoHostName",
        "GlueCEStateWorstResponseTime",
        "GlueCEStateWaitingJobs",
        "GlueCEStateRunningJobs",
        "GlueCEStateTotalJobs",
        "GlueCEPolicyMaxTotalJobs",
        "Memory",
        "Disk",
        "GPUs",
        "OpSys",
        "Arch",
        "Site",
        "Queue",
        "Tags",
    ):
        assert name in ad, name


def test_unbounded_walltime_is_published_as_glue_infinity(tmp_path: Path) -> None:
    facts = slot.discover(make_host(tmp_path), tmp_path)
    ad = glue.slot_ad(facts, AgentSettings(), agent_version="1")
    assert ad["GlueCEPolicyMaxWallClockTime"] == 999999999
    assert ad["TimeLeft"] == -1
    assert "Requirements" not in ad


# shared/ lies beside the clone, on developers' machines and on CI alike
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "jdl-corpus"


def test_every_ce_attribute_the_jdl_corpus_tests_is_published(tmp_path: Path) -> None:
    assert CORPUS.is_dir(), f"the gLite JDL corpus is expected at {CORPUS}"
    import re

    wanted = set()
    for jdl in CORPUS.glob("*.jdl"):
        for name in re.findall(r"other\.(\w+)", jdl.read_text(errors="replace")):
            # Storage (GlueSE*/GlueSA*) and data-catalogue attributes describe SEs, not a CE;
            # 021, a WMS-internal ad copied verbatim, names `defaultExsitmented`, which no CE has.
            if not name.lower().startswith(("gluese", "gluesa", "storage", "defaultexsit")):
                wanted.add(name.lower())
    facts = slot.discover(make_host(tmp_path), tmp_path)
    published = {name.lower() for name in glue.slot_ad(facts, AgentSettings(), agent_version="1")}
    assert wanted, "the corpus names no attribute at all"
    assert wanted <= published, sorted(wanted - published)
