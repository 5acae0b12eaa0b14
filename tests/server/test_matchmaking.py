"""The matchmaking core: task-queue index, pre-filters, symmetric match, choice rule, list-match."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from pilotwms.classad import ERROR, ClassAd, matches, parse_ad
from pilotwms.server.logic.matchmaking import (
    TIME_SEGMENTS_S,
    ClauseResult,
    FairShare,
    SlotOffer,
    TaskQueue,
    TaskQueueIndex,
    _reads_my,
    explain_match,
    failed_clauses,
    task_queue_key,
    time_segment,
)

PRODUCTION = 'other.GlueCEStateStatus == "Production"'

PILOT = """[
  Cpus = 8; Memory = 16000; FreeCpus = 8; FreeMemory = 16000; RunningJobs = 0;
  GlueCEInfoTotalCPUs = 8; GlueCEStateFreeCPUs = 8; GlueCEStateStatus = "Production";
  GlueCEStateEstimatedResponseTime = 0; TimeLeft = 86000;
  GlueCEPolicyMaxWallClockTime = 1433; GlueHostMainMemoryRAMSize = 16000;
  GlueHostOperatingSystemName = "AlmaLinux"; GlueHostArchitecturePlatformType = "x86_64";
  GlueCEUniqueID = "wn12.nikhef.nl:pilotwms/NIKHEF-short"; GlueSiteName = "NIKHEF";
  GlueHostApplicationSoftwareRunTimeEnvironment = {"VO-atlas-release-21.0.77", "python3"};
  VOs = {"atlas", "dteam"}; GlueCEAccessControlBaseRule = {"VO:atlas", "VO:dteam"};
]"""


def pilot(**attrs: Any) -> ClassAd:
    ad = parse_ad(PILOT)
    for name, value in attrs.items():
        ad[name] = value
    return ad


def tq(tq_id: int, group: str = "atlas", requirements: str = PRODUCTION, **kw: Any) -> TaskQueue:
    kw.setdefault("waiting", 100)
    return TaskQueue(id=tq_id, owner_group=group, requirements=requirements, **kw)


def index_of(*queues: TaskQueue, fair_share: FairShare | None = None) -> TaskQueueIndex:
    index = TaskQueueIndex(fair_share)
    for q in queues:
        index.add(q)
    return index


FULL = SlotOffer(8, 16000, 86000.0, idle=True)


# --- task-queue key and time segments ---------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "segment"),
    [
        (None, None),
        (0, 360),
        (360, 360),
        (361, 1800),
        (3000, 3600),
        (3300, 3600),
        (3601, 21600),
        (86_400, 86_400),
        (1_080_000, 1_080_000),
        (2_000_000, 2_000_000),
    ],
)
def test_time_segment_rounds_up_to_dirac_segments(seconds: int | None, segment: int | None) -> None:
    assert time_segment(seconds) == segment
    assert list(TIME_SEGMENTS_S) == sorted(TIME_SEGMENTS_S)


def test_task_queue_key_is_submissions_key() -> None:
    from pilotwms.server.logic import submission

    key = task_queue_key("atlas", PRODUCTION, "-other.X", cpus=4, memory_mb=2000, wall_time_s=60)
    derived = submission._Derived(
        requirements=PRODUCTION,
        rank="-other.X",
        cpus=4,
        whole_node=False,
        memory_mb=2000,
        wall_time_s=60,
        cpu_time_s=None,
        retry_count=3,
        shallow_retry_count=1,
        expiry=None,
        sandbox=[],
    )
    assert key == submission._task_queue_key("atlas", derived)
    assert len(key) == 64
    assert int(key, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"owner_group": "cms"},
        {"requirements": "true"},
        {"rank": "other.Y"},
        {"cpus": 2},
        {"whole_node": True},
        {"memory_mb": 1000},
        {"wall_time_s": 61},
        {"cpu_time_s": 10},
    ],
)
def test_task_queue_key_differs_when_anything_grouped_on_differs(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "owner_group": "atlas",
        "requirements": PRODUCTION,
        "rank": "-other.X",
        "cpus": 1,
        "whole_node": False,
        "memory_mb": 2000,
        "wall_time_s": 60,
        "cpu_time_s": None,
    }
    assert task_queue_key(**base) == task_queue_key(**base)
    assert task_queue_key(**base) != task_queue_key(**{**base, **change})


# --- the representative job ad ---------------------------------------------------------


def test_template_ad_carries_derived_attributes_and_job_ad_text() -> None:
    q = tq(1, "atlas_prod", cpus=4, memory_mb=2000, wall_time_s=3600, job_ad='Site = "X"')
    ad = q.template_ad()
    assert ad.evaluate("CpuNumber") == 4
    assert ad.evaluate("Memory") == 2000
    assert ad.evaluate("MaxWallTime") == 3600
    assert ad.evaluate("OwnerGroup") == "atlas_prod"
    assert ad.evaluate("VO") == "atlas_prod"
    assert ad.evaluate("Site") == "X"
    assert "MaxCPUTime" not in ad


def test_template_ad_takes_the_vo_from_the_job_ad() -> None:
    ad = tq(1, "atlas_prod", job_ad='VirtualOrganisation = "atlas"').template_ad()
    assert ad.evaluate("VO") == "atlas"
    assert ad.evaluate("VirtualOrganisation") == "atlas"


def test_empty_requirements_accept_any_slot() -> None:
    assert index_of(tq(1, requirements="")).match(pilot(), FULL) == [1]


# --- pre-filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "offer", "fits"),
    [
        ({"cpus": 1}, SlotOffer(1), True),
        ({"cpus": 2}, SlotOffer(1), False),
        ({"cpus": 8}, SlotOffer(8), True),
        ({"memory_mb": 2000}, SlotOffer(1, 2000), True),
        ({"memory_mb": 2001}, SlotOffer(1, 2000), False),
        ({"memory_mb": 99999}, SlotOffer(1, None), True),
        ({"wall_time_s": 3600}, SlotOffer(1, None, 3600.0), True),
        ({"wall_time_s": 3601}, SlotOffer(1, None, 3600.0), False),
        ({"wall_time_s": 10**7}, SlotOffer(1, None, None), True),
        ({"whole_node": True}, SlotOffer(8, idle=True), True),
        ({"whole_node": True}, SlotOffer(7, idle=False), False),
        ({"waiting": 0}, SlotOffer(8), False),
    ],
)
def test_pre_filters(queue: dict[str, Any], offer: SlotOffer, fits: bool) -> None:
    index = index_of(tq(1, **queue))
    assert index.matching(pilot(), offer) == ([1] if fits else [])


# --- Requirements and the symmetric match ------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "matched"),
    [
        (PRODUCTION, True),
        ('other.GlueCEStateStatus == "Draining"', False),
        (
            'Member("VO-atlas-release-21.0.77", '
            "other.GlueHostApplicationSoftwareRunTimeEnvironment)",
            True,
        ),
        ('Member("VO-cms-CMSSW_14", other.GlueHostApplicationSoftwareRunTimeEnvironment)', False),
        ('RegExp("nikhef", other.GlueCEUniqueID)', True),
        ('!RegExp("cern", other.GlueCEUniqueID)', True),
        (
            "other.GlueHostMainMemoryRAMSize >= 16000 && other.GlueCEPolicyMaxWallClockTime > 60",
            True,
        ),
        ("other.GlueHostMainMemoryRAMSize > 16000", False),
        ("other.NoSuchAttribute > 1", False),  # UNDEFINED is no match
        ("other.GlueCEStateStatus + 1 == 2", False),  # ERROR is no match
        ("other.GlueCEInfoTotalCPUs >= CpuNumber", True),
        ("1", False),  # a lone number is not true
        (f"1 && {PRODUCTION}", True),  # but && takes it as true
    ],
)
def test_job_requirements(requirements: str, matched: bool) -> None:
    index = index_of(tq(1, requirements=requirements))
    assert index.matching(pilot(), FULL) == ([1] if matched else [])
    assert matches(tq(1, requirements=requirements).template_ad(), pilot()) is matched


def test_a_shared_clause_reading_my_attributes_is_evaluated_per_job_ad() -> None:
    clause = "other.GlueCEInfoTotalCPUs >= CpuNumber && " + PRODUCTION
    index = index_of(tq(1, requirements=clause, cpus=4), tq(2, requirements=clause, cpus=16))
    # the 16-core queue fails the pre-filter anyway; give it a bigger offer to reach the clause
    assert index.matching(pilot(), SlotOffer(32)) == [1]


@pytest.mark.parametrize(
    ("text", "reads_my"),
    [
        ('other.GlueCEStateStatus == "Production"', False),
        ('Member("VO-x", other.GlueHostApplicationSoftwareRunTimeEnvironment)', False),
        ("TARGET.Foo.Bar == 1.5e3", False),
        ("other.X is undefined && .5 < other.Y", False),
        ("(other.x).y > 1", False),
        ("other.'odd name' == 2", False),
        ("other.GlueCEInfoTotalCPUs >= CpuNumber", True),
        ("my.X > 1", True),
        ("self.X > 1", True),
        ("parent.X", True),
        ("'odd name' == 2", True),
        ('eval("X") == 1', True),
        ("[a = 1].a == 1", True),
        ("other", True),
    ],
)
def test_which_clauses_read_the_job_ad(text: str, reads_my: bool) -> None:
    assert _reads_my(text) is reads_my


def test_pilot_attribute_computed_from_the_job_is_evaluated_per_queue() -> None:
    ad = pilot()
    ad["Doubled"] = parse_ad("[x = other.CpuNumber * 2]")["x"]
    index = index_of(
        tq(1, requirements="other.Doubled >= 8", cpus=4),
        tq(2, requirements="other.Doubled >= 8", cpus=2),
    )
    assert index.matching(ad, FULL) == [1]


@pytest.mark.parametrize(
    ("pilot_requirements", "expected"),
    [
        ('other.VO == "dteam"', [2]),
        ('member(other.VirtualOrganisation, {"atlas", "dteam"})', [1, 2]),
        ("other.CpuNumber >= 2", [3]),
        ("false", []),
        ("true", [1, 2, 3]),
    ],
)
def test_pilot_requirements_make_the_match_symmetric(
    pilot_requirements: str, expected: list[int]
) -> None:
    ad = pilot()
    ad["Requirements"] = parse_ad(f"[r = {pilot_requirements}]")["r"]
    index = index_of(tq(1, "atlas"), tq(2, "dteam"), tq(3, "cms", cpus=2))
    assert index.matching(ad, FULL) == expected


def _random_requirements(rng: random.Random) -> str:
    pool = [
        PRODUCTION,
        'other.GlueCEStateStatus == "Draining"',
        'Member("VO-atlas-release-21.0.77", other.GlueHostApplicationSoftwareRunTimeEnvironment)',
        'Member("VO-lhcb-v45r1", other.GlueHostApplicationSoftwareRunTimeEnvironment)',
        'RegExp("nikhef", other.GlueCEUniqueID)',
        'RegExp("cern", other.GlueCEUniqueID)',
        "other.GlueHostMainMemoryRAMSize >= 8000",
        "other.GlueHostMainMemoryRAMSize >= 32000",
        "other.GlueCEStateFreeCPUs >= CpuNumber",
        "other.GlueCEPolicyMaxWallClockTime * 60 >= MaxWallTime",
        'member(VO, other.VOs) || other.GlueSiteName == "CERN"',
        "other.TimeLeft > 4000",
    ]
    return " && ".join(rng.sample(pool, rng.randint(1, 4)))


def test_index_agrees_with_evaluating_every_queue_whole() -> None:
    rng = random.Random(1)
    queues = [
        tq(
            i,
            rng.choice(["atlas", "lhcb", "dteam"]),
            _random_requirements(rng),
            cpus=rng.choice([1, 1, 2, 4, 8]),
            memory_mb=rng.choice([None, 1000, 8000]),
            wall_time_s=rng.choice([None, 600, 50_000]),
            waiting=rng.choice([0, 5]),
        )
        for i in range(1, 121)
    ]
    index = index_of(*queues)
    for _ in range(40):
        free = rng.randint(1, 8)
        left = rng.choice([None, 1000.0, 5000.0, 86000.0])
        ad = pilot(GlueCEStateFreeCPUs=free, TimeLeft=-1 if left is None else int(left))
        if rng.random() < 0.5:
            ad["Requirements"] = parse_ad('[r = other.VO != "lhcb"]')["r"]
        offer = SlotOffer(free, rng.choice([None, 4000]), left, idle=free == 8)
        expected = [
            q.id
            for q in queues
            if q.waiting > 0
            and (offer.idle if q.whole_node else q.cpus <= offer.free_cores)
            and (offer.free_memory_mb is None or (q.memory_mb or 0) <= offer.free_memory_mb)
            and (offer.time_left_s is None or (q.wall_time_s or 0) <= offer.time_left_s)
            and matches(q.template_ad(), ad)
            and ("Requirements" not in ad or matches(ad, q.template_ad()))
        ]
        assert index.matching(ad, offer) == expected


# --- the choice rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues", "expected"),
    [
        # Rank: the job's Rank of this pilot, highest first, whatever the rest says
        (
            [
                tq(1, rank="1", priority=9, oldest_submitted=0.0),
                tq(2, rank="other.GlueCEStateFreeCPUs"),
                tq(3, rank="-other.GlueCEStateEstimatedResponseTime"),
            ],
            2,
        ),
        ([tq(1, rank='"text"'), tq(2, rank="-1")], 1),  # non-numeric rank is 0.0
        # Priority within a group
        ([tq(1, priority=1), tq(2, priority=5), tq(3, priority=3)], 2),
        # Age: the oldest submission first
        ([tq(1, oldest_submitted=300.0), tq(2, oldest_submitted=100.0)], 2),
        # then the queue id
        ([tq(7), tq(3), tq(5)], 3),
        # fair share between equal groups, no one running: by group name
        ([tq(1, "lhcb"), tq(2, "atlas")], 2),
        # rank beats fair share and priority
        ([tq(1, "atlas", priority=9), tq(2, "cms", rank="2")], 2),
    ],
)
def test_choice_rule_first_pick(queues: list[TaskQueue], expected: int) -> None:
    assert index_of(*queues).match(pilot(), FULL) == [expected]


def test_a_rank_reading_the_job_ad_is_evaluated_per_job_ad() -> None:
    index = index_of(tq(1, rank="CpuNumber", cpus=1), tq(2, rank="CpuNumber", cpus=4))
    assert index.match(pilot(), SlotOffer(9), max_jobs=3) == [2, 2, 1]


def test_fair_share_prefers_the_group_with_less_running() -> None:
    index = index_of(tq(1, "atlas"), tq(2, "cms"))
    index.set_running({"atlas": 3})
    # cms catches up, then the tie at 3 : 3 goes by group name
    assert index.match(pilot(), FULL, max_jobs=5) == [2, 2, 2, 1, 2]


def test_priority_does_not_cross_groups() -> None:
    index = index_of(tq(1, "atlas", priority=100), tq(2, "cms", priority=0))
    assert index.match(pilot(), FULL, max_jobs=4) == [1, 2, 1, 2]


def _rounds(index: TaskQueueIndex, rounds: int, free: int = 1) -> Counter[str]:
    handed: Counter[str] = Counter()
    for _ in range(rounds):
        for tq_id in index.match(pilot(), SlotOffer(free), max_jobs=free):
            index.take(tq_id)
            handed[index.get(tq_id).owner_group] += 1
    return handed


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"atlas": 1, "cms": 1}, {"atlas": 60, "cms": 60}),
        ({"atlas": 3, "cms": 1}, {"atlas": 90, "cms": 30}),
        ({"atlas": 1, "cms": 3}, {"atlas": 30, "cms": 90}),
        ({"atlas": 1, "cms": 1, "lhcb": 1}, {"atlas": 40, "cms": 40, "lhcb": 40}),
        ({"atlas": 3, "cms": 2, "lhcb": 1}, {"atlas": 60, "cms": 40, "lhcb": 20}),
        ({"atlas": 0.5, "cms": 1.5, "lhcb": 1}, {"atlas": 20, "cms": 60, "lhcb": 40}),
    ],
)
@pytest.mark.parametrize("free", [1, 4])
def test_fair_share_converges_to_the_weights(
    weights: dict[str, float], expected: dict[str, int], free: int
) -> None:
    queues = [tq(i, group, waiting=10_000) for i, group in enumerate(sorted(weights), 1)]
    index = index_of(*queues, fair_share=FairShare(weights))
    assert _rounds(index, 120 // free, free) == expected


def test_fair_share_follows_running_jobs_as_they_end() -> None:
    index = index_of(tq(1, "atlas"), tq(2, "cms"), fair_share=FairShare({"atlas": 3}))
    index.set_running({"atlas": 3, "cms": 1})  # at the share already
    index.release("atlas", 3)  # atlas's jobs end: atlas is owed three slots
    assert index.match(pilot(), FULL, max_jobs=3) == [1, 1, 1]
    assert index.running("atlas") == 0


def test_fair_share_never_starves_a_group_of_equal_rank() -> None:
    index = index_of(
        tq(1, "atlas", priority=10, waiting=10**6),
        tq(2, "biomed", waiting=5),
        fair_share=FairShare({"atlas": 100, "biomed": 1}),
    )
    index.set_running({"atlas": 0, "biomed": 40})
    handed = _rounds(index, 5000)
    assert handed["biomed"] == 5


def test_fair_share_weights_must_be_positive() -> None:
    with pytest.raises(ValueError, match="atlas"):
        FairShare({"atlas": 0})
    with pytest.raises(ValueError, match="default"):
        FairShare(default_weight=-1)


# --- filling several slots --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues", "offer", "max_jobs", "expected"),
    [
        # eight 1-core jobs from two groups, alternating by fair share
        ([tq(1, "atlas"), tq(2, "cms")], SlotOffer(8), 8, [1, 2, 1, 2, 1, 2, 1, 2]),
        # max_jobs bounds the reply
        ([tq(1, "atlas")], SlotOffer(8), 3, [1, 1, 1]),
        # a queue with 2 waiting jobs gives 2
        (
            [tq(1, "atlas", waiting=2), tq(2, "atlas", oldest_submitted=9.0)],
            SlotOffer(4),
            4,
            [1, 1, 2, 2],
        ),
        # one 8-core job fills the pilot when it ranks best
        ([tq(1, cpus=8, rank="1"), tq(2)], SlotOffer(8), 8, [1]),
        # cores run out: 4 + 4, then nothing fits
        ([tq(1, cpus=4)], SlotOffer(8), 8, [1, 1]),
        # a 4-core job first, then 1-core ones fill the rest
        ([tq(1, cpus=4, rank="1"), tq(2, "cms")], SlotOffer(6), 8, [1, 2, 2]),
        # memory is a total over the jobs handed out
        ([tq(1, memory_mb=3000)], SlotOffer(8, 10_000), 8, [1, 1, 1]),
        # whole node: only on an idle pilot, and only one
        ([tq(1, whole_node=True, cpus=1, rank="1"), tq(2)], SlotOffer(8, idle=True), 8, [1]),
        ([tq(1, whole_node=True, rank="1"), tq(2)], SlotOffer(8, idle=False), 2, [2, 2]),
        # a whole-node job is not added once other jobs are handed out
        ([tq(1, whole_node=True), tq(2, rank="1")], SlotOffer(8, idle=True), 2, [2, 2]),
        # no match, no jobs
        ([tq(1, requirements="false")], SlotOffer(8), 8, []),
        ([tq(1)], SlotOffer(8), 0, []),
    ],
)
def test_multi_slot_filling(
    queues: list[TaskQueue], offer: SlotOffer, max_jobs: int, expected: list[int]
) -> None:
    assert index_of(*queues).match(pilot(), offer, max_jobs) == expected


def test_match_does_not_change_the_index_and_take_does() -> None:
    index = index_of(tq(1, waiting=2))
    assert index.match(pilot(), FULL, 8) == [1, 1]
    assert index.match(pilot(), FULL, 8) == [1, 1]
    index.take(1, 2)
    assert index.get(1).waiting == 0
    assert index.match(pilot(), FULL, 8) == []
    assert index.running("atlas") == 2
    index.set_waiting(1, 1)
    assert index.match(pilot(), FULL, 8) == [1]


# --- keeping the index current -----------------------------------------------------------


def test_add_replaces_and_remove_forgets() -> None:
    index = index_of(tq(1, requirements="false"), tq(2, requirements=PRODUCTION))
    assert index.matching(pilot(), FULL) == [2]
    index.add(tq(1, requirements=PRODUCTION))
    assert index.matching(pilot(), FULL) == [1, 2]
    index.remove(2)
    index.remove(99)
    assert 2 not in index
    assert len(index) == 1
    assert index.matching(pilot(), FULL) == [1]


def test_shared_clauses_survive_removal_of_one_queue() -> None:
    req = f'{PRODUCTION} && RegExp("nikhef", other.GlueCEUniqueID)'
    index = index_of(tq(1, requirements=req), tq(2, requirements=req, group="cms"))
    assert index.matching(pilot(), FULL) == [1, 2]
    index.remove(1)
    index.add(tq(3, requirements='other.GlueSiteName == "CERN"'))
    assert index.matching(pilot(), FULL) == [2]
    index.add(tq(4, requirements=req))
    assert index.matching(pilot(), FULL) == [2, 4]


def test_a_queue_that_does_not_parse_never_matches_and_says_why() -> None:
    index = index_of(tq(1, requirements="other.X == "), tq(2))
    assert index.matching(pilot(), FULL) == [2]
    results = index.explain(1, pilot())
    assert not results[-1].ok
    assert "do not parse" in results[-1].clause_text
    assert results[-1].value is ERROR


# --- list-match: why is my job waiting -------------------------------------------------------


SOFTWARE = 'Member("VO-cms-CMSSW_14_0_1", other.GlueHostApplicationSoftwareRunTimeEnvironment)'


def test_explain_names_the_missing_software_tag() -> None:
    req = f"{PRODUCTION} && {SOFTWARE} && other.GlueHostMainMemoryRAMSize >= 4000"
    results = explain_match(tq(1, "cms", req, cpus=4), pilot(FreeCpus=2, RunningJobs=6))
    assert results == [
        ClauseResult("needs 4 cores, slot has 2 free", False, False, "resources"),
        ClauseResult(PRODUCTION, True, True),
        ClauseResult(SOFTWARE, False, False),
        ClauseResult("other.GlueHostMainMemoryRAMSize >= 4000", True, True),
    ]
    assert [r.clause_text for r in failed_clauses(results)] == [
        "needs 4 cores, slot has 2 free",
        SOFTWARE,
    ]


def test_explain_reports_the_pilot_side_and_every_pre_filter() -> None:
    ad = pilot()
    ad["Requirements"] = parse_ad('[r = other.VO == "dteam" && other.CpuNumber <= 8]')["r"]
    queue = tq(1, "atlas", cpus=2, memory_mb=20_000, wall_time_s=90_000)
    results = explain_match(queue, ad)
    assert [(r.clause_text, r.ok, r.side) for r in results] == [
        ("needs 2 cores, slot has 8 free", True, "resources"),
        ("needs 20000 MB memory, slot has 16000 MB free", False, "resources"),
        ("needs 90000 s wall time, slot has 86000 s left", False, "resources"),
        (PRODUCTION, True, "job"),
        ('other.VO == "dteam"', False, "pilot"),
        ("other.CpuNumber <= 8", True, "pilot"),
    ]


def test_explain_a_matching_queue_has_no_failure_and_unbounded_slots_say_so() -> None:
    queue = tq(1, whole_node=True, memory_mb=100, wall_time_s=10)
    results = explain_match(queue, pilot(), SlotOffer(8, None, None, idle=True))
    assert failed_clauses(results) == []
    assert [r.clause_text for r in results[:3]] == [
        "needs a whole node, slot is idle",
        "needs 100 MB memory, slot memory is not limited",
        "needs 10 s wall time, slot time is unbounded",
    ]


def test_explain_a_plain_job_ad() -> None:
    job = parse_ad(f'[Requirements = {PRODUCTION} && other.GlueSiteName == "CERN"]')
    assert [(r.clause_text, r.value, r.ok) for r in explain_match(job, pilot())] == [
        (PRODUCTION, True, True),
        ('other.GlueSiteName == "CERN"', False, False),
    ]
    assert explain_match(parse_ad("[a = 1]"), pilot()) == [
        ClauseResult("the job has no Requirements", False, False)
    ]


@pytest.mark.parametrize(
    ("attrs", "offer"),
    [
        (
            {"FreeCpus": 3, "FreeMemory": 7000, "TimeLeft": 500, "RunningJobs": 5},
            SlotOffer(3, 7000, 500.0, idle=False),
        ),
        ({"TimeLeft": -1}, SlotOffer(8, 16000, None, idle=True)),
    ],
)
def test_slot_offer_from_a_slot_ad(attrs: dict[str, Any], offer: SlotOffer) -> None:
    assert SlotOffer.from_ad(pilot(**attrs)) == offer


def test_slot_offer_from_a_bare_queue_ad() -> None:
    assert SlotOffer.from_ad(ClassAd({"Cpus": 4})) == SlotOffer(4, None, None, idle=True)
    assert SlotOffer.from_ad(ClassAd()) == SlotOffer(1, None, None, idle=True)
