"""Demand filtering with the ClassAd engine: each task queue's Requirements and Rank evaluated
against every queue's static slot ad (native and GLUE names), then fed to the policy."""

from __future__ import annotations

import pytest

from pilotwms.factory.config import QueueConfig
from pilotwms.factory.demand import TaskQueueSnapshot, match_demand
from pilotwms.factory.policy import QueueInput, plan

pytest.importorskip("pilotwms.classad")


def _queue(name: str, backend: str, **ad: object) -> QueueConfig:
    return QueueConfig.model_validate({"name": name, "backend": backend, "ad": ad})


QUEUES = [
    _queue("local", "local", cores=1, memory_mb=1000, walltime_s=86400, site="localhost"),
    _queue(
        "slurm",
        "slurm",
        cores=4,
        memory_mb=8000,
        walltime_s=7200,
        site="NIKHEF",
        tags=["apptainer"],
    ),
    _queue("pbs", "pbs", cores=32, memory_mb=128000, walltime_s=172800, site="SURF"),
]


@pytest.mark.parametrize(
    ("ad", "ranks"),
    [
        ("Requirements = true; Rank = other.Cpus", {"local": 1.0, "slurm": 4.0, "pbs": 32.0}),
        ('Requirements = member("apptainer", other.Tags)', {"slurm": 0.0}),
        (
            'Requirements = member("apptainer", '
            "other.GlueHostApplicationSoftwareRunTimeEnvironment)",
            {"slurm": 0.0},
        ),
        (
            "CpuNumber = 8; Requirements = other.GlueCEInfoTotalCPUs >= CpuNumber; "
            "Rank = -other.GlueCEStateEstimatedResponseTime",
            {"pbs": 0.0},
        ),
        (
            'Requirements = other.GlueSiteName == "NIKHEF" || other.Site == "SURF"',
            {"slurm": 0.0, "pbs": 0.0},
        ),
        ("Requirements = other.GlueCEPolicyMaxWallClockTime >= 1440", {"local": 0.0, "pbs": 0.0}),
        (
            "Requirements = other.Memory >= 8000; Rank = -other.Memory",
            {"slurm": -8000.0, "pbs": -128000.0},
        ),
        (
            'Requirements = other.GlueCEStateStatus == "Production" && other.Queue != "pbs"',
            {"local": 0.0, "slurm": 0.0},
        ),
        ("Requirements = other.NoSuchAttribute > 1", {}),  # UNDEFINED is no match
    ],
)
def test_requirements_and_rank_against_slot_ads(ad: str, ranks: dict[str, float]) -> None:
    result = match_demand([TaskQueueSnapshot("tq", 7, 1, ad)], QUEUES)
    if ranks:
        (demand,) = result.demand
        assert dict(demand.ranks) == ranks
        assert (demand.tq_id, demand.waiting, demand.cores) == ("tq", 7, 1)
        assert result.unmatched == {}
    else:
        assert result.demand == []
        assert result.unmatched == {"tq": 7}


def test_unparsable_ad_is_reported_not_fatal() -> None:
    result = match_demand(
        [
            TaskQueueSnapshot("bad", 3, 1, "Requirements = ("),
            TaskQueueSnapshot("good", 1, 1, "Requirements = true"),
        ],
        QUEUES,
    )
    assert "bad" in result.problems and "does not parse" in result.problems["bad"]
    assert [d.tq_id for d in result.demand] == ["good"]


def test_only_queues_that_can_run_the_jobs_get_pilots() -> None:
    """20 jobs that need a tag only the Slurm queue has: Slurm pilots only, none elsewhere."""
    result = match_demand(
        [TaskQueueSnapshot("tagged", 20, 1, 'Requirements = member("apptainer", other.Tags)')],
        QUEUES,
    )
    inputs = [QueueInput(q.limits()) for q in QUEUES]  # wait_new = 60 s (the default)
    first = plan(inputs, result.demand, now=0.0).decisions
    assert {name: d.submit for name, d in first.items()} == {"local": 0, "slurm": 0, "pbs": 0}
    later = [QueueInput(q.limits(), memory=first[q.name].memory) for q in QUEUES]
    decisions = plan(later, result.demand, now=60.0).decisions
    assert {name: d.submit for name, d in decisions.items()} == {"local": 0, "slurm": 5, "pbs": 0}
    assert decisions["local"].reason.startswith("no waiting job can run here")
    assert decisions["pbs"].reason.startswith("no waiting job can run here")
