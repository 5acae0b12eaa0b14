"""gLite's default Requirements/Rank/retries and the clauses its library appends."""

from __future__ import annotations

import pytest
from jdl_helpers import jdl

from pilotwms.classad import parse_expr, unparse
from pilotwms.jdl import Defaults, apply_defaults

PROD = 'other.GlueCEStateStatus == "Production"'
BASE = 'Executable = "/bin/true";\n'


def _req(text: str, defaults: Defaults | None = None) -> str:
    return unparse(apply_defaults(jdl(text), defaults)["Requirements"])


def _same(left: str, right: str) -> bool:
    return unparse(parse_expr(left)) == unparse(parse_expr(right))


CASES = [
    ("no requirements: the default", BASE, PROD),
    (
        "user requirements are and-ed",
        BASE + "Requirements = other.Cpus > 1;",
        f"(other.Cpus > 1) && ({PROD})",
    ),
    ("identical requirements are not repeated", BASE + f"Requirements = {PROD};", PROD),
    (
        "cpunumber appends total cpus",
        BASE + "CpuNumber = 4;",
        f"({PROD}) && other.GlueCEInfoTotalCPUs >= 4",
    ),
    (
        "nodenumber appends total cpus",
        BASE + "NodeNumber = 2;",
        f"({PROD}) && other.GlueCEInfoTotalCPUs >= 2",
    ),
    (
        "smp granularity",
        BASE + "SMPGranularity = 2;",
        f"({PROD}) && other.GlueHostArchitectureSMPSize >= SMPGranularity",
    ),
    (
        "host number with cpus",
        BASE + "CpuNumber = 5;\nHostNumber = 2;",
        f"(({PROD}) && other.GlueCEInfoTotalCPUs >= 5) && other.GlueHostArchitectureSMPSize >= "
        "((CpuNumber % HostNumber > 0) ? (1 + CpuNumber / HostNumber) : (CpuNumber / HostNumber))",
    ),
    (
        "host number with whole nodes appends nothing more",
        BASE + "CpuNumber = 4;\nHostNumber = 2;\nWholeNodes = true;",
        f"({PROD}) && other.GlueCEInfoTotalCPUs >= 4",
    ),
    (
        "interactive",
        BASE + 'JobType = "Interactive";',
        f"({PROD}) && other.GlueHostNetworkAdapterOutboundIP",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_requirements(text: str, expected: str) -> None:
    assert _same(_req(text), expected)


def test_host_number_clause_evaluates_the_ceiling() -> None:
    ad = apply_defaults(jdl(BASE + "CpuNumber = 5;\nHostNumber = 2;"), Defaults(requirements=None))
    slot = jdl("GlueCEInfoTotalCPUs = 8; GlueHostArchitectureSMPSize = 3;")
    assert ad["Requirements"].evaluate(ad, slot) is True
    small = jdl("GlueCEInfoTotalCPUs = 8; GlueHostArchitectureSMPSize = 2;")
    assert ad["Requirements"].evaluate(ad, small) is False


def test_configurable_and_disabled_defaults() -> None:
    custom = Defaults(requirements='other.Arch == "x86_64"', rank="other.Memory")
    ad = apply_defaults(jdl(BASE), custom)
    assert unparse(ad["Requirements"]) == 'other.Arch == "x86_64"'
    assert unparse(ad["Rank"]) == "other.Memory"
    bare = apply_defaults(jdl(BASE), Defaults(None, None, None, None))
    assert "Requirements" not in bare and "Rank" not in bare and "RetryCount" not in bare


def test_rank_default_only_when_none_is_given() -> None:
    assert unparse(apply_defaults(jdl(BASE))["Rank"]) == "-other.GlueCEStateEstimatedResponseTime"
    assert unparse(apply_defaults(jdl(BASE + "Rank = 1;"))["Rank"]) == "1"


def test_multicore_rank_prefers_free_cpus() -> None:
    assert unparse(apply_defaults(jdl(BASE + "CpuNumber = 2;"))["Rank"]) == (
        "other.GlueCEStateFreeCPUs"
    )
    assert unparse(apply_defaults(jdl(BASE + "CpuNumber = 2; Rank = 0;"))["Rank"]) == "0"


def test_retry_counts_filled_when_missing() -> None:
    ad = apply_defaults(jdl(BASE + "ShallowRetryCount = -1;"), Defaults(retry_count=5))
    assert (ad.evaluate("RetryCount"), ad.evaluate("ShallowRetryCount")) == (5, -1)


def test_compound_requests_get_default_node_retry_counts() -> None:
    ad = apply_defaults(jdl('[ Type = "dag"; nodes = [ ]; ShallowRetryCount = 1; ]'))
    assert ad.evaluate("DefaultNodeRetryCount") == 3
    assert "DefaultNodeShallowRetryCount" not in ad  # the DAG's own value wins
    assert "Requirements" not in ad and "Rank" not in ad


def test_hlr_location_goes_to_environment() -> None:
    ad = apply_defaults(jdl(BASE + 'HLRLocation = "hlr:56568";\nEnvironment = "A=1";'))
    assert ad.evaluate("Environment") == ["A=1", "HLR_LOCATION=hlr:56568"]


def test_original_ad_is_untouched() -> None:
    ad = jdl(BASE)
    apply_defaults(ad)
    assert list(ad) == ["Executable"]
