"""Matchmaking: matches, symmetric_match, rank, conjuncts and explain."""

from __future__ import annotations

from pilotwms.classad import (
    ERROR,
    UNDEFINED,
    conjuncts,
    explain,
    matches,
    parse_ad,
    parse_expr,
    rank,
    symmetric_match,
)

JOB = parse_ad(
    """
    Executable = "/bin/sh";
    VirtualOrganisation = "atlas";
    Requirements = other.GlueCEStateStatus == "Production"
        && other.GlueHostMainMemoryRAMSize >= 2048
        && Member("MPI-START", other.GlueHostApplicationSoftwareRunTimeEnvironment)
        && RegExp(".*\\\\.cern\\\\.ch.*", other.GlueCEUniqueID);
    Rank = -other.GlueCEStateEstimatedResponseTime;
    """
)
CE = parse_ad(
    """[
    GlueCEUniqueID = "ce01.cern.ch:8443/cream-lsf-atlas";
    GlueCEStateStatus = "production";
    GlueHostMainMemoryRAMSize = 4096;
    GlueHostApplicationSoftwareRunTimeEnvironment = {"LCG-2", "mpi-start"};
    GlueCEStateEstimatedResponseTime = 120;
    Requirements = other.VirtualOrganisation == "atlas";
    ]"""
)


def test_job_matches_a_fitting_ce() -> None:
    assert matches(JOB, CE)
    assert symmetric_match(JOB, CE)


def test_undefined_requirements_do_not_match() -> None:
    empty = parse_ad("[ Requirements = true ]")
    assert not matches(JOB, empty)
    assert matches(empty, JOB)
    assert not symmetric_match(JOB, empty)


def test_ad_without_requirements_matches_nothing() -> None:
    assert not matches(parse_ad("[a = 1]"), CE)


def test_error_requirements_do_not_match() -> None:
    assert not matches(parse_ad('[ Requirements = "yes" && true ]'), CE)


def test_symmetric_match_needs_both_sides() -> None:
    cms_job = JOB.copy()
    cms_job["VirtualOrganisation"] = "cms"
    assert matches(cms_job, CE)
    assert not symmetric_match(cms_job, CE)


def test_rank_is_a_float_and_non_numbers_are_zero() -> None:
    assert rank(JOB, CE) == -120.0
    assert rank(parse_ad('[ Rank = "high" ]'), CE) == 0.0
    assert rank(parse_ad("[ a = 1 ]"), CE) == 0.0
    assert rank(parse_ad("[ Rank = other.missing ]"), CE) == 0.0
    assert rank(parse_ad("[ Rank = true ]"), CE) == 1.0


def test_conjuncts_split_a_top_level_and_chain_only() -> None:
    parts = conjuncts(parse_expr("a && (b || c) && d && (e && f)"))
    assert parts == [parse_expr(x) for x in ("a", "b || c", "d", "e", "f")]
    assert conjuncts(parse_expr("a || b")) == [parse_expr("a || b")]


def test_explain_reports_each_clause_with_its_value() -> None:
    ce = CE.copy()
    ce["GlueHostMainMemoryRAMSize"] = 1024
    del ce["GlueCEUniqueID"]
    report = explain(JOB, ce)
    assert [value for _, value in report] == [True, False, True, UNDEFINED]
    assert report[1][0] == parse_expr("other.GlueHostMainMemoryRAMSize >= 2048")


def test_explain_without_requirements_is_empty() -> None:
    assert explain(parse_ad("[a = 1]"), CE) == []


def test_self_referencing_requirements_do_not_crash_matching() -> None:
    ad = parse_ad("[ Requirements = Requirements ]")
    assert not matches(ad, CE)
    assert explain(ad, CE) == [(parse_expr("Requirements"), ERROR)]


def test_anymatch_with_list_elements_as_target() -> None:
    job = parse_ad(
        '[ Requirements = anyMatch(other.CloseSEs, target.GlueSEStatus == "Production") ]'
    )
    ce = parse_ad('[ CloseSEs = { [GlueSEStatus = "Draining"], [GlueSEStatus = "Production"] } ]')
    assert matches(job, ce)
